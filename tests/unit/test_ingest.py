"""Ingest orchestration on a DuckDB file: batch ids, quarantine with reasons, idempotence, the gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from price_alchemy.data.files import write_listings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.data.warehouse.duckdb_backend import DuckDBWarehouse
from price_alchemy.errors import DataValidationError
from price_alchemy.ingest import batch_id_for, check_file, ingest_file
from price_alchemy.params import ValidationParams

pytestmark = pytest.mark.unit

GOOD_ROWS = 200
# Appended after the header (line 1) and GOOD_ROWS records (lines 2..201).
BAD_LINES = (
    "9001\tJunk condition\tabc\tBeauty/Makeup/Lips\t\t12\t0\tdesc\n",  # line 202: read reject
    "9002\tToo few fields\t3\n",  # line 203: read reject
    "9003\tBad condition\t7\tBeauty/Makeup/Lips\tMAC\t12\t0\tdesc\n",  # validation reject
    "9004\tFlat category\t2\tWomen\t\t12\t0\tdesc\n",  # validation reject
    "5\tDuplicate id\t2\tBeauty/Makeup/Lips\t\t12\t0\tdesc\n",  # validation reject (id 5 is a good row)
)


def _listings_file(path: Path, rows: int = GOOD_ROWS, seed: int = 3, extra: tuple[str, ...] = ()) -> Path:
    write_listings(generate_listings(rows, seed=seed), path)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(extra)
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    with DuckDBWarehouse(tmp_path / "home" / "warehouse.duckdb") as opened:
        yield opened


def test_batch_id_depends_on_content_only(tmp_path: Path) -> None:
    first = _listings_file(tmp_path / "a" / "train.tsv")
    same = _listings_file(tmp_path / "b" / "train.tsv")
    other = _listings_file(tmp_path / "c" / "train.tsv", seed=4)

    batch = batch_id_for(first)
    assert batch == batch_id_for(same) == batch_id_for(first)
    assert batch != batch_id_for(other)
    assert batch.startswith("train-") and len(batch) == len("train-") + 12
    weird = tmp_path / "my file-2024.01.tsv.gz"
    weird.write_bytes(b"x")
    assert batch_id_for(weird).startswith("my_file_2024-")


def test_good_rows_load_and_bad_rows_are_quarantined_with_reasons(
    tmp_path: Path, warehouse: DuckDBWarehouse
) -> None:
    path = _listings_file(tmp_path / "batch.tsv", extra=BAD_LINES)
    reports = tmp_path / "home" / "reports"

    checked = ingest_file(path, warehouse, ValidationParams(), reports)

    assert checked.passed
    assert checked.batch_id == batch_id_for(path)
    assert checked.read.n_records == GOOD_ROWS + len(BAD_LINES)
    assert checked.bad_fraction == pytest.approx(5 / 205)
    loaded = warehouse.read_listings()
    assert len(loaded) == GOOD_ROWS
    assert sorted(loaded["listing_id"]) == list(range(GOOD_ROWS))
    assert set(loaded["batch_id"]) == {checked.batch_id}
    assert loaded.loc[loaded["listing_id"] == 5, "name"].item() != "Duplicate id"  # the first copy is kept

    quarantine = warehouse.read_quarantine(batch_id=checked.batch_id)
    rows = {
        int(r.listing_id): (r.stage, None if pd.isna(r.line) else int(r.line), r.reason)
        for r in quarantine.itertuples()
    }
    assert rows == {
        9001: ("read", 202, "item_condition_id 'abc' is not an integer"),
        9002: ("read", 203, "expected 8 fields, got 3"),
        9003: ("validate", None, "item_condition_id not in 1..5"),
        9004: ("validate", None, "category_name not shaped a/b/c"),
        5: ("validate", None, "duplicate listing_id"),
    }
    assert quarantine.loc[quarantine["listing_id"] == 9002, "raw"].item() == "9002\tToo few fields\t3"
    assert '"name":"Flat category"' in quarantine.loc[quarantine["listing_id"] == 9004, "raw"].item()

    report_path = checked.report_paths["json"]
    assert report_path == reports / "validation" / f"{checked.batch_id}.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is True
    assert (report["n_rows"], report["n_valid"], report["n_bad"]) == (203, GOOD_ROWS, 3)
    assert report["reason_counts"] == {
        "item_condition_id not in 1..5": 1,
        "category_name not shaped a/b/c": 1,
        "duplicate listing_id": 1,
    }
    assert checked.report_paths["data_docs"].is_file()


def test_ingesting_the_same_file_twice_leaves_one_copy(tmp_path: Path, warehouse: DuckDBWarehouse) -> None:
    path = _listings_file(tmp_path / "batch.tsv", extra=BAD_LINES)
    params, reports = ValidationParams(), tmp_path / "reports"

    first = ingest_file(path, warehouse, params, reports)
    second = ingest_file(path, warehouse, params, reports)

    assert first.batch_id == second.batch_id
    assert len(warehouse.read_listings()) == GOOD_ROWS
    assert len(warehouse.read_quarantine()) == len(BAD_LINES)
    batches = warehouse.batches()
    assert batches["batch_id"].tolist() == [first.batch_id]
    assert batches["rows"].tolist() == [GOOD_ROWS]


def test_a_batch_with_too_many_unparseable_rows_loads_nothing_but_records_its_quarantine(
    tmp_path: Path, warehouse: DuckDBWarehouse
) -> None:
    # 12 unparseable of 112 records = 10.7% > 5%; the GE report alone (100 clean rows) would pass.
    junk = tuple(f"{9100 + i}\tJunk price\t1\tBeauty/Makeup/Lips\tMAC\tfree\t0\tdesc\n" for i in range(12))
    path = _listings_file(tmp_path / "bad.tsv", rows=100, extra=junk)

    with pytest.raises(DataValidationError) as caught:
        ingest_file(path, warehouse, ValidationParams(), tmp_path / "reports")

    error = caught.value
    assert error.failed == ["max_bad_fraction"]
    assert error.bad_fraction == pytest.approx(12 / 112)
    assert "12 unparseable + 0 invalid rows of 112" in str(error)
    assert warehouse.read_listings().empty
    quarantine = warehouse.read_quarantine()
    assert len(quarantine) == 12
    assert set(quarantine["reason"]) == {"price 'free' is not a number"}
    assert sorted(quarantine["line"].astype(int)) == list(range(102, 114))
    report = json.loads((tmp_path / "reports" / "validation" / f"{batch_id_for(path)}.json").read_text())
    assert report["n_rows"] == 100  # the saved report is there for the failed batch too


def test_a_batch_with_too_many_invalid_rows_fails_validation(
    tmp_path: Path, warehouse: DuckDBWarehouse
) -> None:
    bad = tuple(f"{9200 + i}\tBad condition\t9\tBeauty/Makeup/Lips\tMAC\t12\t0\tdesc\n" for i in range(10))
    path = _listings_file(tmp_path / "invalid.tsv", rows=100, extra=bad)

    with pytest.raises(DataValidationError, match=r"bad_fraction 0\.0909 > max_bad_fraction 0\.0500"):
        ingest_file(path, warehouse, ValidationParams(), tmp_path / "reports")

    assert warehouse.read_listings().empty
    quarantine = warehouse.read_quarantine()
    assert len(quarantine) == 10
    assert set(quarantine["reason"]) == {"item_condition_id not in 1..5"}
    assert set(quarantine["stage"]) == {"validate"}


def test_a_named_batch_replaces_only_itself(tmp_path: Path, warehouse: DuckDBWarehouse) -> None:
    first = _listings_file(tmp_path / "one.tsv", rows=100, seed=1)
    params, reports = ValidationParams(), tmp_path / "reports"

    ingest_file(first, warehouse, params, reports, batch_id="2024-01-01")
    ingest_file(first, warehouse, params, reports, batch_id="2024-01-02")

    assert sorted(warehouse.batches()["batch_id"]) == ["2024-01-01", "2024-01-02"]
    assert len(warehouse.read_listings()) == 200


def test_check_file_touches_no_warehouse_and_reports_the_verdict(tmp_path: Path) -> None:
    path = _listings_file(tmp_path / "batch.tsv", extra=BAD_LINES)

    # GE alone sees 3 bad rows of 203 (1.5%); with the 2 unparseable ones it is 5 of 205 (2.4%).
    checked = check_file(path, ValidationParams(max_bad_fraction=0.02))

    assert checked.report.passed and not checked.passed
    assert len(checked.valid) == GOOD_ROWS
    assert len(checked.quarantine) == 5 and set(checked.quarantine["batch_id"]) == {checked.batch_id}
    with pytest.raises(DataValidationError) as caught:
        checked.raise_for_verdict()
    assert caught.value.failed == ["max_bad_fraction"]
    assert "Unparseable rows: 2" in checked.summary()
    assert not (tmp_path / "home").exists()
