"""The pieces of batch scoring that need no model: ids seen, pieces, fallback, rows to store, memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from price_alchemy import schema
from price_alchemy.data.files import stream_listings, write_listings
from price_alchemy.data.repair import lenient_canonical
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.inference import fallback_price, report_path
from price_alchemy.price_range import PriceInterval
from price_alchemy.scorer import ScoringModel, SeenIds, _pieces
from price_alchemy.scoring import _prediction_rows, query_batch_id

pytestmark = pytest.mark.unit


def test_seen_ids_flags_repeats_within_and_across_chunks() -> None:
    seen = SeenIds()
    assert seen.duplicated(np.array([5, 1, 5, 9])).tolist() == [False, False, True, False]
    assert seen.duplicated(np.array([2, 9, 3])).tolist() == [False, True, False]
    for start in range(10, 1000, 7):  # many chunks: the sorted levels merge
        seen.duplicated(np.arange(start, start + 7))
    assert seen.duplicated(np.array([1, 2, 3, 4, 500, 2000])).tolist() == [
        True,
        True,
        True,
        False,
        True,
        False,
    ]


def test_pieces_cut_frames_and_mark_the_last_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    import price_alchemy.scorer as scorer

    monkeypatch.setattr(scorer, "SCORE_ROWS", 4)
    frames = [
        ("a", pd.DataFrame({"x": range(10)})),
        ("b", pd.DataFrame({"x": []})),
        ("c", pd.DataFrame({"x": [1]})),
    ]
    pieces = [(key, len(piece), last) for key, piece, last in _pieces(frames)]
    assert pieces == [("a", 4, False), ("a", 4, False), ("a", 2, True), ("b", 0, True), ("c", 1, True)]


def test_fallback_price_is_the_median_training_prediction() -> None:
    assert fallback_price({"prediction_quantiles": [3.0, 9.0, 16.456, 30.0, 90.0]}) == 16.46
    assert fallback_price({}) is None and fallback_price(None) is None
    assert fallback_price({"prediction_quantiles": [1.0, "x", None, 2.0, 3.0]}) is None
    assert fallback_price({"prediction_quantiles": [1.0, 2.0, float("nan"), 3.0, 4.0]}) is None


def test_report_path_and_query_batch_ids() -> None:
    assert report_path(Path("out/sub.csv")) == Path("out/sub.flags.csv")
    assert report_path(Path("sub")) == Path("sub.flags.csv")
    assert query_batch_id("SELECT * FROM {listings}") == query_batch_id("  SELECT * FROM {listings}\n")
    assert query_batch_id("SELECT 1").startswith("query-") and len(query_batch_id("SELECT 1")) == 18


def _model(*, interval: bool = True, fallback: float | None = 12.5) -> ScoringModel:
    return ScoringModel(
        uri="models:/m/1",
        label="m v1",
        model_name="m",
        version="1",
        model_dir=Path("."),
        digest=None,
        interval=PriceInterval(0.8, -0.5, 0.4) if interval else None,
        fallback_price=fallback,
    )


def test_rows_to_store_carry_flags_and_ranges_and_leave_out_duplicates() -> None:
    raw = {
        schema.LISTING_ID: ["1", "2", "3", "1", "4"],
        "name": ["a", "b", "", "a", "d"],
        "item_condition_id": ["1", "x", "", "1", "2"],
        "category_name": ["A/B/C", "A/B/C", "", "A/B/C", "A/B"],
        "brand_name": ["", "", "", "", ""],
        "shipping": ["1", "0", "", "1", "1"],
        "item_description": ["d", "d", "", "d", "d"],
    }
    chunk = lenient_canonical(raw, 5, schema.LISTING_ID)
    dup = np.array([False, False, False, True, False])
    model_rows = ~dup
    model_rows[chunk.fallback] = False
    prices = np.array([10.0, 20.0, 40.0])  # listings 1, 2, 4 (3 has no content, the second 1 is a repeat)

    rows = _prediction_rows(chunk, dup, prices, _model())
    assert rows["listing_id"].tolist() == [1, 2, 3, 4]
    assert rows["price"].tolist() == [10.0, 20.0, 12.5, 40.0]
    assert rows["flags"].tolist() == [None, "imputed:item_condition_id", "fallback", "imputed:category_name"]
    low, high = PriceInterval(0.8, -0.5, 0.4).bounds(np.array([10.0]))
    assert rows["price_low"].iloc[0] == round(float(low[0]), 2) and rows["price_high"].iloc[0] == round(
        float(high[0]), 2
    )
    assert np.isnan(rows["price_low"].iloc[2]) and np.isnan(
        rows["price_high"].iloc[2]
    )  # no range for a fallback

    without = _prediction_rows(chunk, dup, prices, _model(interval=False, fallback=None))
    assert without["listing_id"].tolist() == [1, 2, 4]  # no fallback price: the listing is not stored
    assert without["price_low"].isna().all()


def _held_while_streaming(path: Path, chunk_rows: int) -> int:
    """The most Python + Arrow memory held at a chunk boundary while streaming ``path``."""
    tracemalloc.start()
    held = 0
    try:
        with stream_listings(path, chunk_rows=chunk_rows) as stream:
            for chunk in stream.chunks:
                held = max(held, tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes())
                del chunk
    finally:
        tracemalloc.stop()
    return held


@pytest.mark.parametrize("damaged", [False, True], ids=["fast path", "record by record"])
def test_streaming_memory_does_not_grow_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """Memory is bounded by a chunk (``chunk_rows`` records, or one pyarrow block), not by the file."""
    from price_alchemy.data import readers

    monkeypatch.setattr(readers, "STREAM_BLOCK_BYTES", 32 << 10)  # read-ahead (32 blocks) < either file
    peaks = []
    for rows in (20_000, 80_000):
        path = write_listings(
            generate_listings(rows, seed=1, with_price=False), tmp_path / f"t{rows}.tsv", id_column="test_id"
        )
        if damaged:  # a junk condition on the first record sends the whole file down the careful path
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            first = lines[1].split("\t")
            first[2] = "junk"
            lines[1] = "\t".join(first)
            path.write_text("".join(lines), encoding="utf-8")
        peaks.append(_held_while_streaming(path, chunk_rows=2_000))
    assert peaks[1] < 1.5 * peaks[0], (
        f"memory held grew from {peaks[0]:,} to {peaks[1]:,} bytes with 4x the rows"
    )
