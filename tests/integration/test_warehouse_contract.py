"""The warehouse contract, run unchanged against DuckDB and against BigQuery (bqemulator)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.config import Settings
from price_alchemy.data.warehouse import Warehouse, open_warehouse
from price_alchemy.errors import WarehouseError

pytestmark = pytest.mark.integration

LISTING_DTYPES = {**schema.DTYPES, "batch_id": "object"}


def listings(ids: list[int], *, tag: str = "", price: bool = True) -> pd.DataFrame:
    """A canonical frame with awkward values: missing text (None and NaN), quotes, unicode."""
    n = len(ids)
    names = [f"item {i}{tag}" for i in ids]
    if n > 1:
        names[1] = None  # type: ignore[call-overload]
    frame = pd.DataFrame(
        {
            "listing_id": np.array(ids, dtype="int64"),
            "name": names,
            "item_condition_id": np.array([(i % 5) + 1 for i in ids], dtype="int64"),
            "category_name": [None if i % 3 == 0 else "Women/Tops & Blouses/T-Shirts" for i in ids],
            "brand_name": [np.nan if i % 2 else "Nike" for i in ids],
            "shipping": np.array([i % 2 for i in ids], dtype="int64"),
            "item_description": [f'Size "M", très bon état\nline two {i}{tag}' for i in ids],
            "price": [float("nan") if i % 4 == 0 else 10.0 + i for i in ids] if price else [np.nan] * n,
        }
    )
    return frame


def expected(frame: pd.DataFrame, batch_id: str) -> pd.DataFrame:
    """What ``read_listings`` must return for ``frame``: sorted, missing text as null."""
    out = frame.assign(batch_id=batch_id).sort_values("listing_id").reset_index(drop=True)
    for column in schema.TEXT_COLUMNS:
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out[list(LISTING_DTYPES)]


def rejects(rows: list[tuple[str, int | None, int | None, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": [r[0] for r in rows],
            "line": pd.array([r[1] for r in rows], dtype="Int64"),
            "listing_id": pd.array([r[2] for r in rows], dtype="Int64"),
            "reason": [r[3] for r in rows],
            "raw": [f"raw\t{r[3]}" if r[1] is not None else None for r in rows],
        }
    )


def test_round_trip_keeps_values_dtypes_and_missing(warehouse: Warehouse) -> None:
    frame = listings([12, 3, 7, 8])
    assert warehouse.load_batch(frame, "b1") == 4

    got = warehouse.read_listings()

    assert dict(got.dtypes.astype(str)) == LISTING_DTYPES
    pd.testing.assert_frame_equal(got, expected(frame, "b1"))
    by_id = got.set_index("listing_id")
    assert by_id.loc[3, "name"] is None and by_id.loc[7, "name"] == "item 7"
    assert by_id.loc[3, "brand_name"] is None and by_id.loc[12, "category_name"] is None
    assert math.isnan(by_id.loc[12, "price"]) and by_id.loc[3, "price"] == 13.0
    assert by_id.loc[8, "item_description"] == 'Size "M", très bon état\nline two 8'


def test_round_trip_of_test_format_frame_without_prices(warehouse: Warehouse) -> None:
    frame = listings([5, 6], price=False)
    warehouse.load_batch(frame.drop(columns=["price"]), "test-format")

    got = warehouse.read_listings()

    assert got["price"].dtype == "float64" and got["price"].isna().all()
    pd.testing.assert_frame_equal(got, expected(frame, "test-format"))


def test_reloading_a_batch_replaces_it(warehouse: Warehouse) -> None:
    warehouse.load_batch(listings([1, 2, 3]), "b1")
    assert warehouse.load_batch(listings([1, 2, 3]), "b1") == 3
    assert len(warehouse.read_listings()) == 3

    changed = listings([2, 4], tag=" v2")
    assert warehouse.load_batch(changed, "b1") == 2

    pd.testing.assert_frame_equal(warehouse.read_listings(), expected(changed, "b1"))
    assert warehouse.batches()["rows"].tolist() == [2]


def test_batches_coexist_and_filter(warehouse: Warehouse) -> None:
    first, second = listings([1, 2, 3]), listings([2, 9], tag=" second")
    warehouse.load_batch(second, "b2")
    warehouse.load_batch(first, "b1")

    everything = warehouse.read_listings()
    both = pd.concat([expected(first, "b1"), expected(second, "b2")], ignore_index=True)
    pd.testing.assert_frame_equal(everything, both)

    only_b2 = warehouse.read_listings(batch_ids=["b2", "missing"])
    pd.testing.assert_frame_equal(only_b2, expected(second, "b2"))
    none = warehouse.read_listings(batch_ids=[])
    assert none.empty and dict(none.dtypes.astype(str)) == LISTING_DTYPES
    assert warehouse.read_listings(batch_ids=["missing"]).empty


def test_limit_takes_the_first_rows_in_order(warehouse: Warehouse) -> None:
    warehouse.load_batch(listings([5, 1, 3]), "b2")
    warehouse.load_batch(listings([4, 2]), "b1")

    got = warehouse.read_listings(limit=3)

    assert list(zip(got["batch_id"], got["listing_id"], strict=True)) == [("b1", 2), ("b1", 4), ("b2", 1)]
    assert warehouse.read_listings(batch_ids=["b2"], limit=1)["listing_id"].tolist() == [1]


def test_batches_lists_newest_first_with_counts(warehouse: Warehouse) -> None:
    assert warehouse.batches().empty
    warehouse.load_batch(listings([1, 2, 3]), "b1")
    warehouse.load_batch(listings([4]), "b2")
    listed = warehouse.batches()
    assert listed["batch_id"].tolist() == ["b2", "b1"]
    assert listed["rows"].tolist() == [1, 3]
    assert str(listed["ingested_at"].dtype) == "datetime64[us, UTC]"
    assert listed["ingested_at"].iloc[0] > listed["ingested_at"].iloc[1]

    warehouse.load_batch(listings([1, 2]), "b1")  # a reload makes b1 the newest
    listed = warehouse.batches()
    assert listed["batch_id"].tolist() == ["b1", "b2"] and listed["rows"].tolist() == [2, 1]


def test_quarantine_round_trip_and_idempotence(warehouse: Warehouse) -> None:
    bad = rejects([("read", 7, None, "unparseable line"), ("validate", 3, 42, "price <= 0")])
    assert warehouse.load_quarantine(bad, "b1") == 2
    assert warehouse.load_quarantine(bad, "b1") == 2
    warehouse.load_quarantine(rejects([("validate", 1, 5, "bad condition")]), "b2")

    got = warehouse.read_quarantine(batch_id="b1")
    assert got[["stage", "line", "reason"]].values.tolist() == [
        ["validate", 3, "price <= 0"],
        ["read", 7, "unparseable line"],
    ]
    assert got["listing_id"].tolist()[0] == 42 and got["listing_id"].isna().tolist() == [False, True]
    assert str(got["line"].dtype) == "Int64" and str(got["listing_id"].dtype) == "Int64"
    assert str(got["quarantined_at"].dtype) == "datetime64[us, UTC]"
    assert set(got["batch_id"]) == {"b1"}

    assert warehouse.load_quarantine(bad.iloc[:1], "b1") == 1
    assert warehouse.load_quarantine(bad.iloc[:0], "b1") == 0
    everything = warehouse.read_quarantine()
    assert everything["batch_id"].tolist() == ["b2"] and everything["listing_id"].tolist() == [5]


def test_quarantine_refuses_rows_of_another_batch(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="holds rows of"):
        warehouse.load_quarantine(rejects([("read", 1, 1, "x")]).assign(batch_id="other"), "b1")


def test_query_with_placeholders(warehouse: Warehouse) -> None:
    warehouse.load_batch(listings([1, 2, 3, 4]), "b1")
    warehouse.load_quarantine(rejects([("validate", 2, 2, "bad")]), "b1")

    got = warehouse.query(
        "SELECT l.listing_id, l.price, l.brand_name FROM {listings} AS l "
        "WHERE l.listing_id NOT IN (SELECT q.listing_id FROM {quarantine} AS q "
        "WHERE q.listing_id IS NOT NULL) ORDER BY l.listing_id"
    )

    assert got["listing_id"].tolist() == [1, 3, 4] and str(got["listing_id"].dtype) == "int64"
    assert got["price"].tolist()[:2] == [11.0, 13.0] and math.isnan(got["price"].iloc[2])
    assert got["brand_name"].tolist() == [None, None, "Nike"]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM {listings} WHERE true",
        "DROP TABLE {listings}",
        "INSERT INTO {quarantine} (batch_id) VALUES ('x')",
        "UPDATE {listings} SET price = 0 WHERE true",
        "SELECT 1; DELETE FROM {listings} WHERE true",
        "WITH x AS (SELECT 1) DELETE FROM {listings} WHERE true",
        "CREATE TABLE hacked AS SELECT * FROM {listings}",
        "SELECT * INTO hacked FROM {listings}",
        "WITH x AS (DELETE FROM {listings} WHERE true RETURNING *) SELECT * FROM x",
        "SELECT * FROM {listings} JOIN other_table USING (listing_id)",
    ],
)
def test_query_refuses_anything_but_select(warehouse: Warehouse, sql: str) -> None:
    warehouse.load_batch(listings([1, 2]), "b1")
    with pytest.raises(WarehouseError):
        warehouse.query(sql)
    assert len(warehouse.read_listings()) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT l.listing_id, h.content FROM {listings} AS l, read_text('/etc/hostname') AS h",
        "SELECT * FROM '/etc/hostname'",
        "WITH f AS (SELECT * FROM read_csv_auto('/etc/passwd')) SELECT * FROM f",
    ],
)
def test_query_cannot_read_host_files(warehouse: Warehouse, sql: str) -> None:
    warehouse.load_batch(listings([1, 2]), "b1")
    # BigQuery SQL has no glob(): sqlglot's BigQuery dialect cannot even parse it.
    with pytest.raises(WarehouseError, match=r"refuses table function|refused table or file|cannot parse"):
        warehouse.query(sql)


def test_query_sends_literals_and_comments_as_written(warehouse: Warehouse) -> None:
    # 1: both comment markers, no space; 2: only "/*"; 3: a space, no marker; 4: only "*/".
    frame = listings([1, 2, 3, 4]).assign(brand_name=["a/*b*/c", "x /* y", "Air Max", "q*/r;"])
    warehouse.load_batch(frame, "b1")

    tricky = warehouse.query(
        "SELECT listing_id, ';' AS mark -- a comment with ' and ;\n"
        "FROM {listings} WHERE brand_name LIKE '%/*%' AND brand_name LIKE '%*/%' ORDER BY listing_id"
    )
    semicolon = warehouse.query("SELECT listing_id FROM {listings} WHERE brand_name LIKE '%;' /* ; */;")

    # Stripping "comments" would have queried LIKE '% %' (listings 2 and 3).
    assert tricky.to_dict("records") == [{"listing_id": 1, "mark": ";"}]
    assert semicolon["listing_id"].tolist() == [4]


def test_duckdb_engine_refuses_host_files_without_the_parser_check(
    duckdb_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second gate alone: SQL that skips the sqlglot check still cannot leave the warehouse."""
    import duckdb

    from price_alchemy.data.warehouse import duckdb_backend

    def no_check(sql: str, *, listings: str, quarantine: str, dialect: str) -> str:
        return sql.replace("{listings}", listings).replace("{quarantine}", quarantine)

    monkeypatch.setattr(duckdb_backend, "render_query", no_check)
    outside = duckdb_settings.home / "outside.csv"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text("secret\n42\n")
    with open_warehouse(duckdb_settings) as warehouse:
        assert isinstance(warehouse, duckdb_backend.DuckDBWarehouse)
        warehouse.load_batch(listings([1, 2, 3]), "b1")  # loading frames still works
        assert warehouse.query("SELECT count(*) AS n FROM {listings}")["n"].tolist() == [3]

        for sql in (
            "SELECT * FROM read_text('/etc/hostname')",
            "SELECT * FROM glob('/etc/*')",
            f"SELECT * FROM read_csv_auto('{outside}')",
            f"SELECT * FROM '{outside}'",
        ):
            with pytest.raises(WarehouseError, match="disabled by configuration"):
                warehouse.query(sql)
            with pytest.raises(duckdb.PermissionException):
                warehouse.con.execute(sql).fetchall()
        for sql in (
            f"ATTACH '{duckdb_settings.home / 'other.duckdb'}' AS other",
            f"COPY listings TO '{duckdb_settings.home / 'out.csv'}'",
        ):
            with pytest.raises(duckdb.PermissionException):
                warehouse.con.execute(sql)
        # The guard cannot be switched off, nor widened, from SQL.
        for sql in (
            "SET enable_external_access = true",
            "SET allowed_directories = ['/etc']",
            "RESET lock_configuration",
        ):
            with pytest.raises(duckdb.InvalidInputException):
                warehouse.con.execute(sql)
        # User queries run read-only even if a write got past both checks.
        with pytest.raises(WarehouseError, match="read-only"):
            warehouse._read_only_fetch("DELETE FROM listings RETURNING listing_id")
        assert len(warehouse.read_listings()) == 3
    assert not (duckdb_settings.home / "out.csv").exists()


def test_bad_frames_and_batch_ids_are_refused(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="lacks canonical columns"):
        warehouse.load_batch(listings([1]).drop(columns=["shipping"]), "b1")
    with pytest.raises(WarehouseError, match="shipping"):
        warehouse.load_batch(listings([1, 2]).assign(shipping=[1, None]), "b1")
    with pytest.raises(WarehouseError, match="batch_id"):
        warehouse.load_batch(listings([1]), " ")
    assert warehouse.batches().empty


def test_reopening_keeps_tables_and_data(warehouse_settings: Settings) -> None:
    frame = listings([1, 2])
    with open_warehouse(warehouse_settings) as first:
        first.load_batch(frame, "b1")
    if warehouse_settings.warehouse == "duckdb":
        assert warehouse_settings.duckdb_path.is_file()
    with open_warehouse(warehouse_settings) as again:  # table DDL runs again: must be a no-op
        pd.testing.assert_frame_equal(again.read_listings(), expected(frame, "b1"))
        again.load_batch(frame, "b1")
        assert again.batches()["rows"].tolist() == [2]
    with pytest.raises(WarehouseError, match="closed"):
        again.read_listings()
