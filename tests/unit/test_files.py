"""Reading and writing Kaggle-format listing files: formats, compression, malformed records."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.data import readers
from price_alchemy.data.files import ReadResult, read_listings, write_listings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.errors import DataFormatError

pytestmark = pytest.mark.unit

HEADER = "train_id\tname\titem_condition_id\tcategory_name\tbrand_name\tprice\tshipping\titem_description\n"
# One record per physical line except train_id 1, whose quoted description spans lines 3-4.
MALFORMED = (
    HEADER  # line 1
    + "0\tGood item\t1\tWomen/Tops & Blouses/Blouse\tNike\t10.0\t1\tNice top\n"  # 2 kept
    + '1\t"Quoted\tname"\t2\tMen/Tops/T-shirts\t\t20\t0\t"Line one\n'  # 3 kept (3-4)
    + 'line two with ""quotes"" and\ta tab"\n'  # 4
    + "2\tExtra tab\t3\tHome/Kitchen & Dining/Candles\tBrand\t15\t1\tdesc\textra\n"  # 5 rejected
    + "3\tMissing field\t3\tHome/Bedding/Quilts\t15\t1\tdesc\n"  # 6 rejected
    + "4\tJunk condition\tabc\tBeauty/Makeup/Lips\t\t12\t0\tdesc\n"  # 7 rejected
    + "5\tJunk price\t1\tBeauty/Makeup/Lips\tMAC\tx\t0\tdesc\n"  # 8 rejected
    + "abc\tJunk id\t1\tBeauty/Makeup/Lips\t\t12\t0\tdesc\n"  # 9 rejected
    + "\n"  # 10 blank: not a record
    + "6\t  Spaces  \t2\t\t \t0\t1\t   \n"  # 11 kept, empty texts -> None
    + "7\t\t5\tKids/Toys/Dolls\t\t7\t1\tNo description yet\n"  # 12 kept, missing name is not a read error
    + "\tNo id\t1\tA/B/C\t\t5\t1\td\n"  # 13 rejected
    + "8\tBoth bad\tzz\tA/B/C\t\tfree\t1\td\n"  # 14 rejected
)


@pytest.fixture
def malformed(tmp_path: Path) -> ReadResult:
    path = tmp_path / "train.tsv"
    path.write_text(MALFORMED, encoding="utf-8")
    return read_listings(path)


def test_malformed_rows_are_kept_or_reported(malformed: ReadResult) -> None:
    kept = malformed.listings
    assert kept[schema.LISTING_ID].tolist() == [0, 1, 6, 7]
    assert kept["name"].tolist() == ["Good item", "Quoted\tname", "Spaces", None]
    assert kept["item_description"].tolist()[:3] == [
        "Nice top",
        'Line one\nline two with "quotes" and\ta tab',
        None,
    ]
    assert kept["brand_name"].tolist() == ["Nike", None, None, None]
    assert kept["category_name"].tolist() == [
        "Women/Tops & Blouses/Blouse",
        "Men/Tops/T-shirts",
        None,
        "Kids/Toys/Dolls",
    ]
    assert kept["price"].tolist() == [10.0, 20.0, 0.0, 7.0]
    assert kept["item_condition_id"].tolist() == [1, 2, 2, 5]
    assert kept["shipping"].tolist() == [1, 0, 1, 1]
    assert kept["item_description"].iloc[3] == schema.NO_DESCRIPTION

    rejects = malformed.rejects
    assert list(rejects.columns) == list(schema.QUARANTINE_COLUMNS)
    assert rejects["line"].tolist() == [5, 6, 7, 8, 9, 13, 14]
    assert rejects["listing_id"].tolist() == ["2", "3", "4", "5", "abc", None, "8"]
    assert rejects["reason"].tolist() == [
        "expected 8 fields, got 9",
        "expected 8 fields, got 7",
        "item_condition_id 'abc' is not an integer",
        "price 'x' is not a number",
        "train_id 'abc' is not an integer",
        "train_id missing",
        "item_condition_id 'zz' is not an integer; price 'free' is not a number",
    ]
    assert rejects["raw"].iloc[0] == MALFORMED.splitlines()[4]
    assert rejects["raw"].iloc[5] == "\tNo id\t1\tA/B/C\t\t5\t1\td"
    assert set(rejects["stage"]) == {"read"}
    assert rejects["batch_id"].isna().all()
    assert malformed.n_records == 11
    assert malformed.id_column == "train_id" and malformed.has_price


def test_listings_have_canonical_columns_and_dtypes(malformed: ReadResult) -> None:
    assert list(malformed.listings.columns) == list(schema.LISTING_COLUMNS)
    assert {c: str(t) for c, t in malformed.listings.dtypes.items()} == schema.DTYPES


def test_multiline_bad_record_reports_its_first_line_and_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(HEADER + '9\tx\t1\tA/B/C\t\t5\t1\t"two\nlines"\textra\n', encoding="utf-8")
    result = read_listings(path)
    assert result.rejects["line"].tolist() == [2]
    assert result.rejects["reason"].tolist() == ["expected 8 fields, got 9 (record spans lines 2-3)"]
    assert result.rejects["raw"].tolist() == ['9\tx\t1\tA/B/C\t\t5\t1\t"two\nlines"\textra']


def test_unclosed_quote_is_rejected_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    text = HEADER + "0\tok\t1\tA/B/C\t\t5\t1\td\n" + '1\t"open\t1\tA/B/C\t\t5\t1\td\n'
    path.write_text(text, encoding="utf-8")
    result = read_listings(path)
    assert result.listings[schema.LISTING_ID].tolist() == [0]
    assert result.rejects["line"].tolist() == [3]
    assert result.rejects["reason"].iloc[0] == "expected 8 fields, got 2"


@pytest.mark.parametrize(
    "name",
    [
        "train.tsv",
        "train.csv",
        "train.parquet",
        "train.tsv.gz",
        "train.csv.gz",
        "train.tsv.bz2",
        "train.csv.xz",
        "train.tsv.zip",
        "train.parquet.gz",
        "train.parquet.zip",
    ],
)
def test_round_trip_every_format(tmp_path: Path, name: str) -> None:
    df = generate_listings(300, seed=3, start_id=10)
    path = write_listings(df, tmp_path / name)
    result = read_listings(path)
    assert result.rejects.empty
    assert result.id_column == "train_id" and result.has_price
    pd.testing.assert_frame_equal(result.listings, df)


def test_round_trip_7z_and_zip_member_suffix(tmp_path: Path) -> None:
    import py7zr

    df = generate_listings(200, seed=4)
    tsv = write_listings(df, tmp_path / "train.tsv")
    with py7zr.SevenZipFile(tmp_path / "train.tsv.7z", "w") as archive:
        archive.write(tsv, arcname="train.tsv")
    pd.testing.assert_frame_equal(read_listings(tmp_path / "train.tsv.7z").listings, df)
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as archive:  # format from the member name
        archive.write(tsv, arcname="train.tsv")
    pd.testing.assert_frame_equal(read_listings(tmp_path / "bundle.zip").listings, df)


def test_kaggle_layout_and_test_format(tmp_path: Path) -> None:
    df = generate_listings(50, seed=5, with_price=False)
    path = write_listings(df, tmp_path / "test_stg2.tsv", id_column="test_id")
    assert path.read_text(encoding="utf-8").splitlines()[0].split("\t") == [
        "test_id", "name", "item_condition_id", "category_name", "brand_name", "shipping", "item_description",
    ]  # fmt: skip
    result = read_listings(path)
    assert result.id_column == "test_id" and not result.has_price
    assert result.listings["price"].isna().all()
    pd.testing.assert_frame_equal(result.listings, df)
    train = write_listings(generate_listings(5, seed=5), tmp_path / "train.csv")
    assert train.read_text(encoding="utf-8").splitlines()[0] == (
        "train_id,name,item_condition_id,category_name,brand_name,price,shipping,item_description"
    )


def test_fast_and_careful_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = generate_listings(400, seed=6)
    path = write_listings(df, tmp_path / "train.tsv")
    fast = read_listings(path).listings
    monkeypatch.setattr(readers, "_read_fast", lambda *args, **kwargs: None)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 150)
    seen: list[int] = []
    careful = read_listings(path, on_progress=seen.append)
    pd.testing.assert_frame_equal(fast, careful.listings)
    pd.testing.assert_frame_equal(fast, df)
    assert seen == [150, 300, 400]


def test_progress_reports_final_count(tmp_path: Path) -> None:
    path = write_listings(generate_listings(120, seed=1), tmp_path / "train.tsv.gz")
    seen: list[int] = []
    read_listings(path, on_progress=seen.append)
    assert seen[-1] == 120


def test_parquet_rejects_use_row_index(tmp_path: Path) -> None:
    df = generate_listings(5, seed=2).rename(columns={schema.LISTING_ID: "train_id"})
    df["item_condition_id"] = df["item_condition_id"].astype(object)
    df.loc[3, "item_condition_id"] = "bad"
    df["item_condition_id"] = df["item_condition_id"].astype(str)
    df.to_parquet(tmp_path / "train.parquet", index=False)
    result = read_listings(tmp_path / "train.parquet")
    assert result.listings[schema.LISTING_ID].tolist() == [0, 1, 2, 4]
    assert result.rejects["line"].tolist() == [4]
    assert result.rejects["reason"].tolist() == ["item_condition_id 'bad' is not an integer"]
    assert result.rejects["listing_id"].tolist() == ["3"]


@pytest.mark.parametrize("name", ["train.json", "train", "train.tsv.rar", "train.gz"])
def test_unknown_format_raises(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(DataFormatError, match="unknown file format"):
        read_listings(path)


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(HEADER.replace("\tshipping", ""), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"missing required column\(s\) shipping"):
        read_listings(path)


def test_train_file_without_price_and_file_without_id_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(HEADER.replace("\tprice", ""), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"train\.tsv: missing required column\(s\) price"):
        read_listings(path)
    path.write_text(HEADER.replace("train_id", "id"), encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected exactly one id column"):
        read_listings(path)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="empty"):
        read_listings(empty)
    header_only = tmp_path / "header.tsv"
    header_only.write_text(HEADER, encoding="utf-8")
    result = read_listings(header_only)
    assert result.n_records == 0
    assert {c: str(t) for c, t in result.listings.dtypes.items()} == schema.DTYPES


def test_write_refuses_7z_and_unknown_suffix(tmp_path: Path) -> None:
    df = generate_listings(3)
    for name in ("out.tsv.7z", "out.txt"):
        with pytest.raises(DataFormatError):
            write_listings(df, tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_integer_valued_numbers_and_padding_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "train_id,name,item_condition_id,category_name,brand_name,price,shipping,item_description\n"
        ' 12 ,"Comma, name",3.0,A/B/C,,  8.5 ,1,"say ""hi"""\n',
        encoding="utf-8",
    )
    result = read_listings(path)
    row = result.listings.iloc[0]
    assert (row["listing_id"], row["name"], row["item_condition_id"]) == (12, "Comma, name", 3)
    assert np.isclose(row["price"], 8.5) and row["item_description"] == 'say "hi"'
