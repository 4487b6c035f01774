"""The warehouse query check: one SELECT over the listings, sent as written, nothing else read.

The check parses the SQL (sqlglot) instead of matching it with regular expressions: string
literals holding comment markers or ``;`` must reach the engine unchanged, and anything that
reads outside the warehouse (table functions, file paths, other tables) or is not a single
SELECT must be refused with a message naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.data.warehouse.duckdb_backend import DuckDBWarehouse
from price_alchemy.data.warehouse.query_check import check_query, render_query
from price_alchemy.errors import WarehouseError

pytestmark = pytest.mark.unit

DUCK = {"listings": schema.LISTINGS_TABLE, "quarantine": schema.QUARANTINE_TABLE}
BQ = {"listings": "`test-project.ds.listings`", "quarantine": "`test-project.ds.listings_quarantine`"}
TRICKY_LIKE = (
    "SELECT listing_id FROM {listings} WHERE brand_name LIKE '%/*%' AND brand_name LIKE '%*/%' "
    "ORDER BY listing_id"
)


def duck(sql: str) -> str:
    return render_query(sql, dialect="duckdb", **DUCK)


def bigquery(sql: str) -> str:
    return render_query(sql, dialect="bigquery", **BQ)


# --- accepted, and sent exactly as written -------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        TRICKY_LIKE,
        "SELECT ';' AS semicolon, listing_id FROM {listings}",
        "SELECT listing_id FROM {listings} -- a comment with ' and ; in it\nWHERE price > 0",
        "/* leading */ SELECT count(*) AS n FROM {listings} /* trailing */",
        "SELECT count(*) AS n FROM {listings};",
        "SELECT count(*) AS n FROM {listings}; -- done",
        "(SELECT listing_id FROM {listings})",
        "SELECT regexp_matches(name, 'a{2}') AS m, '{\"json\": 1}' AS j FROM {listings}",
        "WITH recent AS (SELECT * FROM {listings} WHERE batch_id = 'b1') SELECT count(*) FROM recent",
        "WITH a AS (SELECT * FROM {listings}), b AS (SELECT * FROM a) SELECT * FROM b JOIN a USING (listing_id)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        "SELECT l.* FROM {listings} AS l WHERE l.listing_id NOT IN (SELECT listing_id FROM {quarantine})",
        "SELECT * FROM {listings} UNION ALL SELECT * FROM {listings}",
        "SELECT * FROM {listings} USING SAMPLE 50 PERCENT (bernoulli, 7)",
        "SELECT x FROM (VALUES (1), (2)) AS v(x)",
        "SELECT u FROM unnest([1, 2, 3]) AS t(u)",
        "FROM {listings} SELECT listing_id",
    ],
)
def test_duckdb_accepts_selects_and_only_substitutes_placeholders(sql: str) -> None:
    assert duck(sql) == sql.replace("{listings}", "listings").replace("{quarantine}", "listings_quarantine")


@pytest.mark.parametrize(
    "sql",
    [
        TRICKY_LIKE,
        "SELECT ';' AS s, price FROM {listings} WHERE name != 'it\\'s' -- note",
        "SELECT l.listing_id, tag FROM {listings} AS l, UNNEST(['a', 'b']) AS tag",
        "SELECT * FROM {listings} FOR SYSTEM_TIME AS OF TIMESTAMP '2026-01-01'",
        "SELECT * FROM `test-project.ds.listings` WHERE batch_id IN (SELECT batch_id FROM {quarantine})",
    ],
)
def test_bigquery_accepts_selects_over_its_tables(sql: str) -> None:
    expected = sql.replace("{listings}", BQ["listings"]).replace("{quarantine}", BQ["quarantine"])
    assert bigquery(sql) == expected


def test_only_the_two_placeholders_are_replaced() -> None:
    sql = "SELECT '{listings}' AS a, '{other}' AS b, '{0}' AS c FROM {listings}"
    assert duck(sql) == "SELECT 'listings' AS a, '{other}' AS b, '{0}' AS c FROM listings"


# --- refused, with a message naming what ---------------------------------------------------------

DUCKDB_REFUSALS = [
    ("SELECT * FROM read_text('/etc/hostname')", r"table function READ_TEXT\('/etc/hostname'\)"),
    ("SELECT * FROM glob('/etc/*')", r"table function GLOB\('/etc/\*'\)"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "table function READ_CSV_AUTO"),
    ("SELECT * FROM read_csv('/etc/passwd', header = true)", "table function READ_CSV"),
    ("SELECT * FROM read_parquet('data.parquet')", "table function READ_PARQUET"),
    ("SELECT * FROM range(10)", "table function"),
    ("SELECT * FROM query('SELECT 1')", "table function QUERY"),
    ("SELECT * FROM 'file.parquet'", 'refused table or file "file.parquet"'),
    ('SELECT * FROM "/etc/passwd"', 'refused table or file "/etc/passwd"'),
    ("SELECT * FROM {listings} JOIN other_table USING (listing_id)", "refused table or file other_table"),
    ("SELECT * FROM main.listings", "refused table or file main.listings"),
    ("SELECT * FROM duckdb_settings()", "table function"),
    ("SELECT * FROM {listings}, LATERAL read_text('/etc/hostname')", "table function READ_TEXT"),
    ("SELECT * FROM {listings}, LATERAL (SELECT * FROM glob('/etc/*'))", "table function GLOB"),
    ("SELECT * FROM ?", r"refuses the table reference \?"),
    ("SELECT * FROM {listings} AS l, l.hidden", "refused table or file l.hidden"),
    ("SELECT * FROM read_text", "refused table or file read_text"),
    (
        "SELECT (SELECT content FROM read_text('/etc/hostname')) AS leak FROM {listings}",
        "table function READ_TEXT",
    ),
    (
        "SELECT * FROM {listings} WHERE name IN (SELECT content FROM read_text('/etc/hostname'))",
        "table function READ_TEXT",
    ),
    ("WITH f AS (SELECT * FROM read_text('/etc/hostname')) SELECT * FROM f", "table function READ_TEXT"),
    ("WITH f AS (SELECT * FROM 'secrets.csv') SELECT * FROM f", 'refused table or file "secrets.csv"'),
    # A non-recursive CTE does not see its own name: inside it, the name is the file.
    (
        'WITH "/etc/passwd" AS (SELECT * FROM "/etc/passwd") SELECT * FROM "/etc/passwd"',
        'refused table or file "/etc/passwd"',
    ),
    # A CTE is visible only in its own WITH's query, not beside it.
    (
        "SELECT * FROM (WITH f AS (SELECT 1) SELECT * FROM f) AS a, f",
        "refused table or file f",
    ),
    ("ATTACH '/tmp/other.duckdb' AS other", "refused ATTACH"),
    ("COPY listings TO '/tmp/out.csv'", "refused COPY"),
    ("INSERT INTO {quarantine} (batch_id) VALUES ('x')", "refused INSERT"),
    ("DELETE FROM {listings} WHERE true", "refused DELETE"),
    ("UPDATE {listings} SET price = 0", "refused UPDATE"),
    ("CREATE TABLE hacked AS SELECT * FROM {listings}", "refused CREATE"),
    ("DROP TABLE {listings}", "refused DROP"),
    ("PRAGMA database_list", "refused PRAGMA"),
    ("INSTALL httpfs", "refused INSTALL"),
    ("LOAD httpfs", "refused LOAD"),
    ("SET enable_external_access = true", "refused SET"),
    ("EXPLAIN SELECT 1", "refused EXPLAIN"),
    ("SELECT * INTO copy_of FROM {listings}", "refused INTO inside it"),
    ("WITH x AS (DELETE FROM {listings} RETURNING *) SELECT * FROM x", "refused DELETE inside it"),
    ("SELECT 1; SELECT 2", "exactly one statement; found 2"),
    ("SELECT 1 FROM {listings}; DELETE FROM {listings}", "exactly one statement; found 2"),
    ("SELECT ';'; SELECT * FROM read_text('/etc/hostname')", "exactly one statement; found 2"),
    ("   ;  ", "exactly one statement; found 0"),
    ("SELECT 'unterminated", "cannot parse the SQL"),
    # No backslash escapes in DuckDB literals: the string ends at \', and a second statement follows.
    ("SELECT 'a\\'; SELECT * FROM read_text('/etc/hostname') --'", "exactly one statement; found 2"),
]


@pytest.mark.parametrize(("sql", "message"), DUCKDB_REFUSALS)
def test_duckdb_refusals_name_what_was_refused(sql: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        duck(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')", "table function EXTERNAL_QUERY"),
        ("SELECT * FROM `test-project.other_ds.listings`", "refused table or file"),
        ("SELECT * FROM `test-project.ds.INFORMATION_SCHEMA.TABLES`", "refused table or file"),
        ("SELECT * FROM `test-project.ds.list*`", "refused table or file"),
        ("SELECT * FROM `test-project.ds.LISTINGS`", "refused table or file"),  # case-sensitive there
        ("SELECT * FROM ML.PREDICT(MODEL `m`, TABLE {listings})", "table function"),
        ("DELETE FROM {listings} WHERE true", "refused DELETE"),
        ("SELECT 1; SELECT 2", "exactly one statement; found 2"),
    ],
)
def test_bigquery_refusals_name_what_was_refused(sql: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        bigquery(sql)


def test_the_check_reads_names_as_the_dialect_does() -> None:
    # DuckDB folds identifiers (LISTINGS is the listings table); BigQuery table names are case-sensitive.
    check_query(
        'SELECT * FROM LISTINGS JOIN "Listings" USING (listing_id)', tables=("listings",), dialect="duckdb"
    )
    with pytest.raises(WarehouseError, match="refused table or file"):
        check_query("SELECT * FROM LISTINGS", tables=("listings",), dialect="bigquery")


# --- on a real DuckDB warehouse ------------------------------------------------------------------


def brands_frame(brands: list[str | None]) -> pd.DataFrame:
    n = len(brands)
    return pd.DataFrame(
        {
            "listing_id": np.arange(1, n + 1, dtype="int64"),
            "name": [f"item {i}" for i in range(1, n + 1)],
            "item_condition_id": np.ones(n, dtype="int64"),
            "category_name": ["Women/Tops & Blouses/T-Shirts"] * n,
            "brand_name": brands,
            "shipping": np.zeros(n, dtype="int64"),
            "item_description": ["desc"] * n,
            "price": np.arange(10.0, 10.0 + n),
        }
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    with DuckDBWarehouse(tmp_path / "home" / "warehouse.duckdb") as opened:
        opened.load_batch(
            # 1: both markers, no space; 2: only /*; 3: a space, no marker; 4: only */; 5: ';'
            brands_frame(["a/*b*/c", "x /* y", "Air Max", "q*/r", "semi;colon"]),
            "b1",
        )
        yield opened


def test_comment_markers_in_literals_reach_duckdb_unchanged(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    original = warehouse._read_only_fetch

    def spy(sql: str) -> pd.DataFrame:
        sent.append(sql)
        return original(sql)

    monkeypatch.setattr(warehouse, "_read_only_fetch", spy)

    got = warehouse.query(TRICKY_LIKE)

    # Stripping "comments" would have run LIKE '% %' and returned listings 2 and 3.
    assert got["listing_id"].tolist() == [1]
    assert sent == [TRICKY_LIKE.replace("{listings}", "listings")]


def test_semicolons_and_comments_are_kept(warehouse: DuckDBWarehouse) -> None:
    sql = (
        "SELECT listing_id, ';' AS mark -- it's; a comment\n"
        "FROM {listings} WHERE brand_name = 'semi;colon' /* ; */;"
    )
    got = warehouse.query(sql)
    assert got.to_dict("records") == [{"listing_id": 5, "mark": ";"}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [r for r in DUCKDB_REFUSALS if any(k in r[0] for k in ("read_text", "glob", "file", "ATTACH", "COPY"))],
)
def test_warehouse_query_refuses_before_running(warehouse: DuckDBWarehouse, sql: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        warehouse.query(sql)
    assert len(warehouse.read_listings()) == 5
