"""Lenient, chunked reading for scoring: every record with an id becomes a listing, flagged if repaired."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from damaged_listings import Damage, write_damaged_file

from price_alchemy import schema
from price_alchemy.data import lenient, readers
from price_alchemy.data.files import read_listings, stream_listings, write_listings
from price_alchemy.data.repair import FALLBACK, IMPUTED, UNKNOWN_CODE, align_record
from price_alchemy.data.synthetic import generate_listings

pytestmark = pytest.mark.unit

N = 400
NAMES = [
    "test_id",
    "name",
    "item_condition_id",
    "category_name",
    "brand_name",
    "shipping",
    "item_description",
]


def _read(path: Path, chunk_rows: int = 50_000) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    listings, flags, skipped = [], [], []
    with stream_listings(path, chunk_rows=chunk_rows) as stream:
        offset = 0
        for chunk in stream.chunks:
            lines = chunk.lines if chunk.lines is not None else np.full(len(chunk.listings), -1)
            listings.append(chunk.listings.assign(line=lines))
            flags.append(chunk.flags.assign(position=chunk.flags["position"] + offset))
            skipped.append(chunk.skipped)
            offset += len(chunk.listings)
        id_column = stream.id_column
    return (
        pd.concat(listings, ignore_index=True),
        pd.concat(flags, ignore_index=True),
        pd.concat(skipped, ignore_index=True),
        id_column,
    )


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Damage:
    return write_damaged_file(tmp_path_factory.mktemp("damaged") / "test.tsv", n=N, seed=3)


def test_every_id_is_kept_once_and_only_unattributable_records_are_left_out(damaged: Damage) -> None:
    listings, _, skipped, id_column = _read(damaged.path)

    assert id_column == "test_id"
    ids = listings[schema.LISTING_ID]
    assert sorted(ids.unique()) == damaged.ids  # nothing with an id is lost
    assert len(ids) == N + damaged.duplicates  # the duplicate is read; the scorer drops it
    assert len(skipped) == damaged.unattributable
    assert skipped["reason"].tolist() == [
        "test_id missing",
        "test_id 'abc' is not an integer",
        "test_id missing",
    ]
    assert skipped["line"].tolist() == [104, 105, 106]  # after id 100 (line 102) and a blank line
    assert {c: str(t) for c, t in listings.drop(columns="line").dtypes.items()} == schema.DTYPES


def test_bad_fields_are_taken_as_unknown_and_flagged_with_the_field(damaged: Damage) -> None:
    listings, flags, _, _ = _read(damaged.path)
    first = listings.drop_duplicates(schema.LISTING_ID).set_index(schema.LISTING_ID)
    by_id = flags.assign(**{schema.LISTING_ID: listings[schema.LISTING_ID].to_numpy()[flags["position"]]})
    by_id = by_id.drop_duplicates(schema.LISTING_ID).set_index(schema.LISTING_ID)

    imputed = by_id[by_id["flag"] == IMPUTED]
    assert set(imputed.index) == set(damaged.imputed)
    for listing, expected_fields in damaged.imputed.items():
        assert expected_fields <= set(imputed.loc[listing, "fields"].split(";")), listing
    assert first.loc[10, "shipping"] == UNKNOWN_CODE and first.loc[20, "item_condition_id"] == UNKNOWN_CODE
    assert first.loc[42, "item_condition_id"] == UNKNOWN_CODE
    assert "item_condition_id 9 not in 1..5" in imputed.loc[42, "reason"]
    assert "shipping 'yes' is not an integer" in imputed.loc[41, "reason"]
    assert first.loc[50, "category_name"] is None
    assert "category_name 'Electronics/Phones' not shaped a/b/c" in imputed.loc[50, "reason"]
    assert len(first.loc[60, "name"]) <= schema.NAME_MAX_LEN and first.loc[60, "name"].startswith(
        "Vintage lot"
    )
    # lines are the physical lines: header 1, listing i on line i + 2 up to id 100
    assert imputed.loc[10, "line"] == 12 and imputed.loc[81, "line"] == 83


def test_content_free_records_with_an_id_get_the_fallback_flag(damaged: Damage) -> None:
    listings, flags, _, _ = _read(damaged.path)
    fallback = set(listings[schema.LISTING_ID].to_numpy()[flags.loc[flags["flag"] == FALLBACK, "position"]])
    assert fallback == damaged.fallback
    lump = flags[listings[schema.LISTING_ID].to_numpy()[flags["position"]] == 92]
    assert "expected 7 fields, got 2; fields could not be separated" in lump["reason"].iloc[0]


def test_an_unbalanced_quote_swallows_nothing(damaged: Damage) -> None:
    listings, flags, _, _ = _read(damaged.path)
    clean = generate_listings(N, seed=3, with_price=False).set_index(schema.LISTING_ID)
    read = listings.drop_duplicates(schema.LISTING_ID).set_index(schema.LISTING_ID)
    flagged_ids = set(listings[schema.LISTING_ID].to_numpy()[flags["position"]])

    assert not flagged_ids & set(damaged.swallowed)  # whole lines, only swallowed: unflagged
    columns = ["name", "item_condition_id", "category_name", "brand_name", "shipping", "item_description"]
    pd.testing.assert_frame_equal(read.loc[damaged.swallowed, columns], clean.loc[damaged.swallowed, columns])
    quoted = flags[listings[schema.LISTING_ID].to_numpy()[flags["position"]] == damaged.quote_id]
    assert "unbalanced quote" in quoted["reason"].iloc[0]
    # the tab inside id 80's description is joined back into it
    assert read.loc[80, "item_description"] == 'has a "quoted\tword'
    assert read.loc[81, "brand_name"] is None and read.loc[81, "shipping"] == clean.loc[81, "shipping"]


def test_chunk_boundaries_change_nothing(damaged: Damage) -> None:
    whole = _read(damaged.path)
    small = _read(damaged.path, chunk_rows=37)
    for a, b in zip(whole[:3], small[:3], strict=True):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_a_clean_file_reads_fast_and_like_the_strict_reader(tmp_path: Path) -> None:
    df = generate_listings(300, seed=8, with_price=False)
    path = write_listings(df, tmp_path / "test.tsv.gz", id_column="test_id")
    with stream_listings(path) as stream:
        chunks = list(stream.chunks)
    assert all(c.lines is None and c.flags.empty and c.skipped.empty for c in chunks)  # the fast path
    pd.testing.assert_frame_equal(
        pd.concat([c.listings for c in chunks], ignore_index=True), read_listings(path).listings
    )


def test_the_fast_path_hands_over_mid_file_without_losing_or_repeating_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = generate_listings(3000, seed=9, with_price=False)
    path = write_listings(df, tmp_path / "test.tsv", id_column="test_id")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2500] = lines[2500].replace("\t", "\tjunk", 2).replace("\tjunk", "\t", 1)  # junk condition, id 2498
    path.write_text("".join(lines), encoding="utf-8")
    monkeypatch.setattr(readers, "STREAM_BLOCK_BYTES", 64 << 10)  # many blocks: some read fast first
    fast_blocks: list[int] = []
    original = lenient.fast_batches

    def counting(*args: object, **kwargs: object) -> object:
        for frame in original(*args, **kwargs):  # type: ignore[arg-type]
            fast_blocks.append(len(frame))
            yield frame

    monkeypatch.setattr(lenient, "fast_batches", counting)
    listings, flags, skipped, _ = _read(path)
    assert len(fast_blocks) > 2  # blocks before the damaged one were read fast
    assert listings[schema.LISTING_ID].tolist() == df[schema.LISTING_ID].tolist()
    assert skipped.empty and len(flags) == 1
    assert flags["line"].tolist() == [2501] and flags["fields"].tolist() == ["item_condition_id"]


def test_train_format_prices_are_not_inputs(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "train_id,name,item_condition_id,category_name,brand_name,price,shipping,item_description\n"
        "1,Good,1,A/B/C,,free,1,desc\n2,Also good,2,A/B/C,,12,0,desc\n",
        encoding="utf-8",
    )
    listings, flags, skipped, id_column = _read(path)
    assert id_column == "train_id" and flags.empty and skipped.empty
    assert np.isnan(listings["price"].iloc[0]) and listings["price"].iloc[1] == 12.0


def test_parquet_is_read_leniently(tmp_path: Path) -> None:
    df = generate_listings(6, seed=2, with_price=False).rename(columns={schema.LISTING_ID: "test_id"})
    df = df.drop(columns="price").astype({"item_condition_id": object, "test_id": object})
    df.loc[2, "item_condition_id"] = "bad"
    df.loc[4, "test_id"] = None
    df["item_condition_id"] = df["item_condition_id"].astype(str)
    df.to_parquet(tmp_path / "test.parquet", index=False)
    listings, flags, skipped, _ = _read(tmp_path / "test.parquet")
    assert listings[schema.LISTING_ID].tolist() == [0, 1, 2, 3, 5]
    assert flags["line"].tolist() == [3] and flags["fields"].tolist() == ["item_condition_id"]
    assert skipped["line"].tolist() == [5] and skipped["reason"].tolist() == ["test_id missing"]


@pytest.mark.parametrize(
    ("fields", "expected", "column"),
    [
        (
            ["1", "n", "3", "A/B/C", "Br", "1", "a", "b"],
            ["1", "n", "3", "A/B/C", "Br", "1", "a\tb"],
            "item_description",
        ),
        (["1", "a", "b", "3", "A/B/C", "Br", "1", "d"], ["1", "a\tb", "3", "A/B/C", "Br", "1", "d"], "name"),
        (["1", "n", "3", "A/B/C", "1", "d"], ["1", "n", "3", "A/B/C", "", "1", "d"], "brand_name"),
        (["1", "n", "3", "Nike", "1", "d"], ["1", "n", "3", "", "Nike", "1", "d"], "category_name"),
    ],
)
def test_align_record_finds_the_reading_where_the_codes_fit(
    fields: list[str], expected: list[str], column: str
) -> None:
    assert align_record(fields, NAMES, has_price=False) == (expected, column)


def test_align_record_gives_up_when_nothing_fits() -> None:
    assert align_record(["1", "lump of text"], NAMES, has_price=False) is None
    assert align_record(["1", "n", "x", "A/B/C", "", "y", "d", "e"], NAMES, has_price=False) is None
