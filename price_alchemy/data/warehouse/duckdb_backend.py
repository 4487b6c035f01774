"""Embedded warehouse: one DuckDB file under ``PRICE_ALCHEMY_HOME``.

Loads run in one transaction (delete the batch, insert the new rows), so a reader never sees a
half-replaced batch. The frame reaches DuckDB as a registered Arrow table: no per-row Python
work, which keeps a full Mercari-size batch (1.5M rows) to seconds. DuckDB allows one
read-write process per file; a second process gets a clear :class:`WarehouseError`.

Since the warehouse itself never reads a file other than its own (frames arrive registered),
the database runs with ``enable_external_access = false`` and its configuration locked: no SQL
on it can read host files (``read_text``, ``glob``, a path used as a table), attach another
database, ``COPY`` out, install an extension or turn the guard back off. DuckDB still uses its
own file, WAL and spill directory. User queries (``query()``) pass the sqlglot check, DuckDB's
own statement-type check, and run in a read-only transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from price_alchemy import schema
from price_alchemy.data.warehouse.base import (
    Warehouse,
    check_batch_id,
    coerce_result,
    empty_listings,
    prepare_listings,
    prepare_quarantine,
)
from price_alchemy.data.warehouse.query_check import render_query
from price_alchemy.errors import WarehouseError

log = logging.getLogger(__name__)

_LISTINGS_DDL = f"""
CREATE TABLE IF NOT EXISTS {schema.LISTINGS_TABLE} (
    listing_id BIGINT NOT NULL,
    name VARCHAR,
    item_condition_id BIGINT NOT NULL,
    category_name VARCHAR,
    brand_name VARCHAR,
    shipping BIGINT NOT NULL,
    item_description VARCHAR,
    price DOUBLE,
    batch_id VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
)"""
_QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {schema.QUARANTINE_TABLE} (
    batch_id VARCHAR NOT NULL,
    stage VARCHAR,
    line BIGINT,
    listing_id BIGINT,
    reason VARCHAR,
    raw VARCHAR,
    quarantined_at TIMESTAMPTZ NOT NULL
)"""
_LISTING_SELECT = ", ".join((*schema.LISTING_COLUMNS, "batch_id"))
#: Set when the database opens, for every connection to it; cannot be re-enabled while it runs.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}


class DuckDBWarehouse(Warehouse):
    """Warehouse in a single DuckDB file (created, with its parent folders, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(str(self.path), config=_CONFIG)
            locked = self._con.execute("SELECT current_setting('lock_configuration')").fetchone()
            if not (locked and locked[0]):  # else another handle in this process already set it up
                # TIMESTAMPTZ values come back in the session zone; BigQuery's TIMESTAMP is UTC.
                # (In ``config`` it would need ICU before DuckDB can load it.)
                self._con.execute("SET GLOBAL TimeZone = 'UTC'")
                self._con.execute("SET lock_configuration = true")
            self._con.execute(_LISTINGS_DDL)
            self._con.execute(_QUARANTINE_DDL)
        except (duckdb.Error, OSError) as exc:
            raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {exc}") from exc
        log.debug("opened DuckDB warehouse %s", self.path)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise WarehouseError(f"DuckDB warehouse {self.path} is closed")
        return self._con

    def _replace_batch(self, table: str, frame: pd.DataFrame, batch_id: str, stamp_column: str) -> int:
        """Delete ``batch_id`` from ``table`` and insert ``frame`` with one timestamp, atomically."""
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        columns = ", ".join(frame.columns)
        with_batch = "batch_id" not in frame.columns
        select = f"{columns}, ? AS batch_id" if with_batch else columns
        params: list[Any] = [batch_id] if with_batch else []
        params.append(datetime.now(UTC))
        insert = (
            f"INSERT INTO {table} ({columns}{', batch_id' if with_batch else ''}, {stamp_column}) "
            f"SELECT {select}, ? FROM incoming_frame"
        )
        con = self.con
        try:
            con.begin()
            con.execute(f"DELETE FROM {table} WHERE batch_id = ?", [batch_id])
            con.register("incoming_frame", arrow)
            try:
                con.execute(insert, params)
            finally:
                con.unregister("incoming_frame")
            stored = con.execute(f"SELECT count(*) FROM {table} WHERE batch_id = ?", [batch_id]).fetchone()
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            raise WarehouseError(f"loading batch {batch_id!r} into {table} failed: {exc}") from exc
        return int(stored[0]) if stored else 0

    def load_batch(self, listings: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        rows = self._replace_batch(schema.LISTINGS_TABLE, prepare_listings(listings), batch_id, "ingested_at")
        log.info("loaded batch %s: %d listings into %s", batch_id, rows, self.path)
        return rows

    def load_quarantine(self, rejects: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        frame = prepare_quarantine(rejects, batch_id)
        rows = self._replace_batch(schema.QUARANTINE_TABLE, frame, batch_id, "quarantined_at")
        log.info("quarantined %d rows of batch %s", rows, batch_id)
        return rows

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        try:
            return self.con.execute(sql, list(params)).df()
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB query failed: {exc}") from exc

    def read_listings(
        self, *, batch_ids: Sequence[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        if batch_ids is not None and len(batch_ids) == 0:
            return empty_listings()
        sql = f"SELECT {_LISTING_SELECT} FROM {schema.LISTINGS_TABLE}"
        params: list[Any] = []
        if batch_ids is not None:
            sql += " WHERE list_contains(?, batch_id)"
            params.append(list(batch_ids))
        sql += " ORDER BY batch_id, listing_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return coerce_result(self._fetch(sql, params))

    def read_quarantine(self, *, batch_id: str | None = None) -> pd.DataFrame:
        sql = f"SELECT * FROM {schema.QUARANTINE_TABLE}"
        params: list[Any] = []
        if batch_id is not None:
            sql += " WHERE batch_id = ?"
            params.append(batch_id)
        sql += " ORDER BY batch_id, line NULLS LAST, listing_id NULLS LAST, stage, reason"
        return coerce_result(self._fetch(sql, params), nullable_ints=("line", "listing_id"))

    def batches(self) -> pd.DataFrame:
        sql = (
            f"SELECT batch_id, count(*) AS rows, max(ingested_at) AS ingested_at "
            f"FROM {schema.LISTINGS_TABLE} GROUP BY batch_id ORDER BY ingested_at DESC, batch_id"
        )
        return coerce_result(self._fetch(sql))

    def query(self, sql: str) -> pd.DataFrame:
        rendered = render_query(
            sql, listings=schema.LISTINGS_TABLE, quarantine=schema.QUARANTINE_TABLE, dialect="duckdb"
        )
        try:
            statements = self.con.extract_statements(rendered)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot parse query: {exc}") from exc
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise WarehouseError("query() accepts one read-only SELECT statement only")
        return coerce_result(self._read_only_fetch(rendered))

    def _read_only_fetch(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` in a read-only transaction, rolled back afterwards: a write cannot land."""
        con = self.con
        try:
            con.execute("BEGIN TRANSACTION READ ONLY")
            try:
                return con.execute(sql).df()
            finally:
                con.execute("ROLLBACK")
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB query failed: {exc}") from exc

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            log.debug("closed DuckDB warehouse %s", self.path)
