"""Embedded warehouse: one DuckDB file under ``PRICE_ALCHEMY_HOME``.

Loads run in one transaction (delete the key's rows, insert the new rows), so a reader never sees a
half-replaced batch; two writers replacing the same key in one process conflict in DuckDB's
optimistic concurrency control, and the loser's whole transaction is retried, so both succeed and
one copy remains. The frame reaches DuckDB as a registered Arrow table (or a stream of record
batches read from a Parquet file by pyarrow): no per-row Python work, which keeps a full
Mercari-size batch (1.5M rows) to seconds. DuckDB allows one read-write process per file; a
second process waits up to :data:`LOCK_WAIT_S` for the first to close it (tasks of two DAGs
triggered by the same event), then gets a clear :class:`WarehouseError`.

Since the warehouse itself never reads a file other than its own (frames arrive registered),
the database runs with ``enable_external_access = false`` and its configuration locked: no SQL
on it can read host files (``read_text``, ``glob``, a path used as a table), attach another
database, ``COPY`` out, install an extension or turn the guard back off. DuckDB still uses its
own file, WAL and spill directory. User queries (``query()``) pass the sqlglot check, DuckDB's
own statement-type check, and run in a read-only transaction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from price_alchemy import schema
from price_alchemy.data.warehouse.base import (
    PREDICTION_COLUMNS,
    PREDICTION_VALUES,
    STREAM_ROWS,
    Warehouse,
    check_batch_id,
    check_key,
    coerce_result,
    empty_listings,
    prepare_listings,
    prepare_predictions,
    prepare_quarantine,
)
from price_alchemy.data.warehouse.query_check import render_query
from price_alchemy.errors import WarehouseError
from price_alchemy.names import PREDICTIONS_TABLE

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
_PREDICTIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
    listing_id BIGINT NOT NULL,
    batch_id VARCHAR NOT NULL,
    price DOUBLE NOT NULL,
    price_low DOUBLE,
    price_high DOUBLE,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    scored_at TIMESTAMPTZ NOT NULL,
    flags VARCHAR
)"""
_LISTING_SELECT = ", ".join((*schema.LISTING_COLUMNS, "batch_id"))
LOCK_WAIT_S = 30.0
"""How long opening waits for another process to release the file."""
CONFLICT_RETRIES = 20
"""Attempts of a replace that loses a write-write conflict to a concurrent one."""
Source = Callable[[], "pa.Table | pa.RecordBatchReader"]
_SETUP_LOCK = threading.Lock()
#: Set when the database opens, for every connection to it; cannot be re-enabled while it runs.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}


class DuckDBWarehouse(Warehouse):
    """Warehouse in a single DuckDB file (created, with its parent folders, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con: duckdb.DuckDBPyConnection | None = _connect(self.path)
            with _SETUP_LOCK:  # handles opened by two threads share one database: set it up once
                locked = self._con.execute("SELECT current_setting('lock_configuration')").fetchone()
                if not (locked and locked[0]):  # else another handle in this process already did
                    # TIMESTAMPTZ values come back in the session zone; BigQuery's TIMESTAMP is UTC.
                    # (In ``config`` it would need ICU before DuckDB can load it.)
                    self._con.execute("SET GLOBAL TimeZone = 'UTC'")
                    self._con.execute("SET lock_configuration = true")
                self._con.execute(_LISTINGS_DDL)
                self._con.execute(_QUARANTINE_DDL)
                self._con.execute(_PREDICTIONS_DDL)
        except (duckdb.Error, OSError) as exc:
            raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {exc}") from exc
        log.debug("opened DuckDB warehouse %s", self.path)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise WarehouseError(f"DuckDB warehouse {self.path} is closed")
        return self._con

    def _replace(self, table: str, source: Source, key: dict[str, str], stamp: tuple[str, datetime]) -> int:
        """Delete ``key``'s rows of ``table`` and insert ``source()`` with the key and stamp, atomically.

        A write-write conflict with a concurrent replace rolls the whole transaction back; it is then
        retried (with a fresh ``source()``), so the last one to commit wins and one copy remains.
        """
        where = " AND ".join(f"{column} = ?" for column in key)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            data = source()
            columns = [c for c in data.schema.names if c not in key]
            insert = (
                f"INSERT INTO {table} ({', '.join([*columns, *key, stamp[0]])}) "
                f"SELECT {', '.join(columns)}, {', '.join('?' for _ in key)}, ? FROM incoming_frame"
            )
            con = self.con
            try:
                con.begin()
                con.execute(f"DELETE FROM {table} WHERE {where}", list(key.values()))
                con.register("incoming_frame", data)
                try:
                    con.execute(insert, [*key.values(), stamp[1]])
                finally:
                    con.unregister("incoming_frame")
                stored = con.execute(
                    f"SELECT count(*) FROM {table} WHERE {where}", list(key.values())
                ).fetchone()
                con.commit()
                return int(stored[0]) if stored else 0
            except duckdb.TransactionException as exc:
                con.rollback()
                if attempt == CONFLICT_RETRIES:
                    raise WarehouseError(f"replacing {key} in {table} kept conflicting: {exc}") from exc
                log.info("replacing %s in %s conflicted with a concurrent write; retrying", key, table)
                time.sleep(random.uniform(0.005, 0.05) * attempt)
            except duckdb.Error as exc:
                con.rollback()
                raise WarehouseError(f"loading {key} into {table} failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _replace_batch(self, table: str, frame: pd.DataFrame, batch_id: str, stamp_column: str) -> int:
        arrow = pa.Table.from_pandas(frame.drop(columns="batch_id", errors="ignore"), preserve_index=False)
        return self._replace(table, lambda: arrow, {"batch_id": batch_id}, (stamp_column, datetime.now(UTC)))

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

    def load_predictions(
        self,
        predictions: pd.DataFrame | Path,
        *,
        batch_id: str,
        model_name: str,
        model_version: str,
        scored_at: datetime,
    ) -> int:
        key = check_key(batch_id=batch_id, model_name=model_name, model_version=model_version)
        if isinstance(predictions, pd.DataFrame):
            arrow = pa.Table.from_pandas(prepare_predictions(predictions), preserve_index=False)

            def source() -> pa.Table | pa.RecordBatchReader:
                return arrow
        else:
            import pyarrow.parquet as pq

            path = Path(predictions)

            def source() -> pa.Table | pa.RecordBatchReader:  # streamed: memory stays flat
                parquet = pq.ParquetFile(path)
                batches = parquet.iter_batches(batch_size=STREAM_ROWS, columns=list(PREDICTION_VALUES))
                return pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches)

        rows = self._replace(PREDICTIONS_TABLE, source, key, ("scored_at", scored_at))
        log.info("stored %d predictions of batch %s by %s v%s", rows, batch_id, model_name, model_version)
        return rows

    def read_predictions(
        self, *, batch_id: str | None = None, model_version: str | None = None
    ) -> pd.DataFrame:
        conditions, params = [], []
        for column, value in (("batch_id", batch_id), ("model_version", model_version)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM {PREDICTIONS_TABLE}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY batch_id, model_name, model_version, listing_id"
        return coerce_result(self._fetch(sql, params))

    def unscored_batches(self, model_name: str, model_version: str) -> pd.DataFrame:
        sql = (
            f"SELECT l.batch_id, count(*) AS rows, count(*) - count(p.listing_id) AS unscored "
            f"FROM {schema.LISTINGS_TABLE} l LEFT JOIN {PREDICTIONS_TABLE} p "
            "ON p.batch_id = l.batch_id AND p.listing_id = l.listing_id "
            "AND p.model_name = ? AND p.model_version = ? AND p.scored_at >= l.ingested_at "
            "GROUP BY l.batch_id HAVING count(p.listing_id) < count(*) ORDER BY l.batch_id"
        )
        return coerce_result(self._fetch(sql, [model_name, model_version]))

    def _stream(self, sql: str, params: Sequence[Any], chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The result in chunks; the reader is closed however the caller stops (end, error, break)."""
        reader = None
        try:
            reader = self.con.sql(sql, params=list(params)).to_arrow_reader(chunk_rows)
            for batch in reader:
                yield coerce_result(batch.to_pandas())
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB query failed: {exc}") from exc
        finally:
            if reader is not None:
                reader.close()

    def iter_listings(
        self, *, batch_ids: Sequence[str] | None = None, chunk_rows: int = STREAM_ROWS
    ) -> Iterator[pd.DataFrame]:
        if batch_ids is not None and len(batch_ids) == 0:
            return
        sql = f"SELECT {_LISTING_SELECT} FROM {schema.LISTINGS_TABLE}"
        params: list[Any] = []
        if batch_ids is not None:
            sql += " WHERE list_contains(?, batch_id)"
            params.append(list(batch_ids))
        yield from self._stream(sql + " ORDER BY batch_id, listing_id", params, chunk_rows)

    def iter_query(self, sql: str, *, chunk_rows: int = STREAM_ROWS) -> Iterator[pd.DataFrame]:
        rendered = self._checked(sql)
        con = self.con
        try:
            con.execute("BEGIN TRANSACTION READ ONLY")
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB query failed: {exc}") from exc
        try:
            yield from self._stream(rendered, (), chunk_rows)
        finally:
            con.execute("ROLLBACK")

    def _checked(self, sql: str) -> str:
        """The query rendered and checked (sqlglot, then DuckDB's own statement type)."""
        rendered = render_query(
            sql, listings=schema.LISTINGS_TABLE, quarantine=schema.QUARANTINE_TABLE, dialect="duckdb"
        )
        try:
            statements = self.con.extract_statements(rendered)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot parse query: {exc}") from exc
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise WarehouseError("query() accepts one read-only SELECT statement only")
        return rendered

    def query(self, sql: str) -> pd.DataFrame:
        return coerce_result(self._read_only_fetch(self._checked(sql)))

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


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to :data:`LOCK_WAIT_S` while another process holds the file's lock."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return duckdb.connect(str(path), config=_CONFIG)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.25)
