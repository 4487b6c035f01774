"""Atomic replaces, the predictions table and streamed reads, on DuckDB and on BigQuery (bqemulator).

- concurrent loads of one batch id leave one copy and a reader never sees the batch missing or
  doubled (DuckDB: one transaction, retried on a write conflict; BigQuery: staging table + one
  MERGE): this failed before, with duplicates or a missing batch on BigQuery and a conflict error
  on DuckDB;
- predictions are replaced per (batch, model, version), from a frame or a Parquet file, and a
  listing counts as unscored for a version until a prediction newer than its ingestion exists;
- streamed reads return exactly what the one-shot reads return, in chunks.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_warehouse_contract import expected, listings

from price_alchemy.config import Settings
from price_alchemy.data.warehouse import Warehouse, open_warehouse
from price_alchemy.errors import WarehouseError

pytestmark = pytest.mark.integration


def _prices(ids: list[int], base: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "listing_id": np.array(ids, dtype="int64"),
            "price": [base + i for i in ids],
            "price_low": [None if i % 3 == 0 else base + i - 2 for i in ids],
            "price_high": [None if i % 3 == 0 else base + i + 3 for i in ids],
            "flags": [None if i % 2 else "imputed:shipping" for i in ids],
        }
    )


def test_concurrent_loads_of_a_batch_leave_one_copy_and_readers_never_see_a_gap(
    warehouse_settings: Settings,
) -> None:
    """Two writers replace batch b1 again and again while a reader counts it: one copy, no gap."""
    small, large = listings(list(range(100)), tag="-small"), listings(list(range(1000, 1250)), tag="-large")
    with open_warehouse(warehouse_settings) as first:
        first.load_batch(small, "b1")
        first.load_batch(listings([7, 8]), "other")
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()
    rounds = 3 if warehouse_settings.warehouse == "bigquery" else 15

    def write(frame: pd.DataFrame) -> None:
        try:
            with open_warehouse(warehouse_settings) as writer:
                for _ in range(rounds):
                    writer.load_batch(frame, "b1")
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        with open_warehouse(warehouse_settings) as reader:
            while not done.is_set():
                seen.append(
                    int(
                        reader.query("SELECT COUNT(*) AS n FROM {listings} WHERE batch_id = 'b1'")["n"].iloc[
                            0
                        ]
                    )
                )
                time.sleep(0.01)

    threads = [threading.Thread(target=write, args=(f,)) for f in (small, large)]
    watcher = threading.Thread(target=read)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    done.set()
    watcher.join(timeout=60)

    assert errors == []
    assert seen and set(seen) <= {len(small), len(large)}, f"a reader saw {sorted(set(seen))}"
    with open_warehouse(warehouse_settings) as after:
        stored = after.read_listings(batch_ids=["b1"])
        assert after.batches().set_index("batch_id")["rows"].to_dict()["other"] == 2
    tags = set(stored["name"].dropna().str.rsplit("-", n=1).str[-1])
    assert len(stored) in {len(small), len(large)} and len(tags) == 1  # one copy, of one load


def test_predictions_replace_per_batch_and_version(warehouse: Warehouse, tmp_path: Path) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        warehouse.load_predictions(
            _prices([1, 2, 3]), batch_id="b1", model_name="m", model_version="1", scored_at=stamp
        )
        == 3
    )
    warehouse.load_predictions(
        _prices([1, 2]), batch_id="b2", model_name="m", model_version="1", scored_at=stamp
    )
    warehouse.load_predictions(
        _prices([1, 2, 3], 50.0), batch_id="b1", model_name="m", model_version="2", scored_at=stamp
    )
    # the same key again, from a Parquet file: replaced, not added
    path = tmp_path / "p.parquet"
    _prices([3, 4], 30.0).to_parquet(path, index=False)
    assert (
        warehouse.load_predictions(path, batch_id="b1", model_name="m", model_version="1", scored_at=stamp)
        == 2
    )

    stored = warehouse.read_predictions()
    assert list(stored.columns) == [
        "listing_id", "batch_id", "price", "price_low", "price_high", "model_name", "model_version", "scored_at", "flags",
    ]  # fmt: skip
    keys = stored[["batch_id", "model_version", "listing_id"]].apply(tuple, axis=1).tolist()
    assert keys == [
        ("b1", "1", 3),
        ("b1", "1", 4),
        ("b1", "2", 1),
        ("b1", "2", 2),
        ("b1", "2", 3),
        ("b2", "1", 1),
        ("b2", "1", 2),
    ]
    first = stored.iloc[0]
    assert first["price"] == 33.0 and np.isnan(first["price_low"]) and first["flags"] is None
    assert stored.iloc[1]["price_low"] == 32.0 and stored.iloc[1]["flags"] == "imputed:shipping"
    assert stored["scored_at"].dt.tz is not None and (stored["scored_at"] == pd.Timestamp(stamp)).all()
    assert str(stored["listing_id"].dtype) == "int64" and str(stored["price"].dtype) == "float64"
    assert len(warehouse.read_predictions(batch_id="b1", model_version="2")) == 3


def test_unscored_batches_follow_predictions_and_reingestion(warehouse: Warehouse) -> None:
    warehouse.load_batch(listings([1, 2, 3]), "b1")
    warehouse.load_batch(listings([4, 5]), "b2")
    assert warehouse.unscored_batches("m", "1").to_dict("list") == {
        "batch_id": ["b1", "b2"], "rows": [3, 2], "unscored": [3, 2],
    }  # fmt: skip

    later = datetime.now(UTC) + timedelta(seconds=5)
    warehouse.load_predictions(
        _prices([1, 2, 3]), batch_id="b1", model_name="m", model_version="1", scored_at=later
    )
    warehouse.load_predictions(
        _prices([4]), batch_id="b2", model_name="m", model_version="1", scored_at=later
    )
    assert warehouse.unscored_batches("m", "1").to_dict("list") == {
        "batch_id": ["b2"],
        "rows": [2],
        "unscored": [1],
    }
    assert warehouse.unscored_batches("m", "2")["batch_id"].tolist() == [
        "b1",
        "b2",
    ]  # a new version: all open

    # predictions older than the batch's ingestion do not count: a re-ingested batch is re-priced
    warehouse.load_predictions(
        _prices([4, 5]), batch_id="b2", model_name="m", model_version="1", scored_at=later - timedelta(days=1)
    )
    assert warehouse.unscored_batches("m", "1")["batch_id"].tolist() == ["b2"]


def test_streamed_reads_equal_the_one_shot_reads(warehouse: Warehouse) -> None:
    frame = listings(list(range(1, 58)))
    warehouse.load_batch(frame, "b1")
    warehouse.load_batch(listings([100, 101]), "b2")

    chunks = list(warehouse.iter_listings(batch_ids=["b1"], chunk_rows=20))
    assert [len(c) for c in chunks] == [20, 20, 17]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected(frame, "b1"))
    assert sum(len(c) for c in warehouse.iter_listings(chunk_rows=1000)) == 59
    assert list(warehouse.iter_listings(batch_ids=[])) == []

    sql = "SELECT listing_id, name FROM {listings} WHERE listing_id < 40 ORDER BY listing_id"
    streamed = pd.concat(list(warehouse.iter_query(sql, chunk_rows=16)), ignore_index=True)
    pd.testing.assert_frame_equal(streamed, warehouse.query(sql))
    with pytest.raises(WarehouseError):
        list(warehouse.iter_query("DELETE FROM {listings}"))
    assert len(warehouse.read_listings()) == 59

    # a reader that stops early (a failed chunk, a break) leaves the warehouse usable, for reads and writes
    streams = {"q": warehouse.iter_query(sql, chunk_rows=16), "l": warehouse.iter_listings(chunk_rows=16)}
    for batch_id, stream in streams.items():
        assert len(next(stream)) == 16
        stream.close()
        warehouse.load_batch(listings([200 + len(warehouse.read_listings())]), batch_id)
    assert len(warehouse.read_listings()) == 61


def test_bad_predictions_and_keys_are_refused(warehouse: Warehouse) -> None:
    stamp = datetime.now(UTC)
    with pytest.raises(WarehouseError, match="lacks columns"):
        warehouse.load_predictions(
            _prices([1]).drop(columns="flags"),
            batch_id="b",
            model_name="m",
            model_version="1",
            scored_at=stamp,
        )
    with pytest.raises(WarehouseError, match="needs a price"):
        warehouse.load_predictions(
            _prices([1]).assign(price=np.nan),
            batch_id="b",
            model_name="m",
            model_version="1",
            scored_at=stamp,
        )
    with pytest.raises(WarehouseError, match="model_version"):
        warehouse.load_predictions(
            _prices([1]), batch_id="b", model_name="m", model_version=" ", scored_at=stamp
        )
    assert warehouse.read_predictions().empty


def test_a_second_process_waits_for_the_duckdb_file(duckdb_settings: Settings) -> None:
    """DuckDB lets one process write a file: another waits (up to LOCK_WAIT_S), then gets it."""
    import subprocess
    import sys

    holder = (
        "import sys, time; from price_alchemy.config import Settings; "
        "from price_alchemy.data.warehouse import open_warehouse\n"
        f"w = open_warehouse(Settings(_env_file=None, warehouse='duckdb', home={str(duckdb_settings.home)!r}))\n"
        "print('open', flush=True); time.sleep(3); w.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        started = time.monotonic()
        with open_warehouse(duckdb_settings) as second:  # would fail at once without the wait
            second.load_batch(listings([1]), "b1")
        assert time.monotonic() - started > 1.0
    finally:
        proc.wait(timeout=60)
