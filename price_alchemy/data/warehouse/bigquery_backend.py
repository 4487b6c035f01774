"""BigQuery warehouse through the official ``google-cloud-bigquery`` client.

How a batch is replaced, and why:

* The new rows arrive through a **load job** from a Parquet file into a **staging table** of
  their own (``<table>__staging_<random>``, expiring after a day in case a process dies), then
  **one** ``MERGE ... ON FALSE`` deletes the key's old rows and inserts the staged ones. One DML
  statement is atomic: a reader sees the old batch or the new one, never none or both, and two
  concurrent loads of the same batch leave one copy (BigQuery serializes DML on a table; a
  statement that loses a conflict is retried here). The staging table is then dropped.
  Streaming inserts are avoided on purpose: rows in the streaming buffer cannot be touched by DML
  for up to 90 minutes, which would break the next reload of the same batch on real BigQuery.
  Load jobs are also free of charge.
* The Parquet file is sent with a *resumable* upload (``load_table_from_file(size=None)``).
  The client's multipart upload (used for files under 5 MiB) labels the media part ``*/*``,
  which real BigQuery accepts but bqemulator 1.4.0 rejects ("unsupported Content-Type '*/*'",
  upstream PR jjviscomi/bqemulator#266); resumable uploads work on both.
* A failure before the ``MERGE`` leaves the table as it was; rerunning the task repairs it.
* Results are fetched with ``to_arrow()`` (or page by page, ``to_arrow_iterable()``, for streamed
  reads) over the REST API, so neither ``db-dtypes`` nor the BigQuery Storage API is needed
  (``to_dataframe`` requires the former).
* ``query()`` passes the shared sqlglot check (BigQuery dialect: one SELECT over the two
  tables, no table functions such as ``EXTERNAL_QUERY``, no other dataset), then asks BigQuery
  itself, with a dry run, whether the statement is a SELECT.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery

from price_alchemy import schema
from price_alchemy.config import Settings
from price_alchemy.data.warehouse.base import (
    PREDICTION_COLUMNS,
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
from price_alchemy.data.warehouse.bigquery_tables import (
    LISTINGS,
    PREDICTIONS,
    QUARANTINE,
    arrow_schema,
    make_client,
)
from price_alchemy.data.warehouse.query_check import render_query
from price_alchemy.errors import WarehouseError
from price_alchemy.names import PREDICTIONS_TABLE

log = logging.getLogger(__name__)

#: A staging table outlives its load by this much at most (a process killed mid-load).
_STAGING_TTL = timedelta(days=1)
#: Attempts of a MERGE that loses a concurrent-update conflict (BigQuery DML on one table).
_MERGE_ATTEMPTS = 5
# Dataset/table creation retries transient errors for 2 minutes, not the client's default 10.
_SETUP_RETRY = bigquery.DEFAULT_RETRY.with_timeout(120.0)


class BigQueryWarehouse(Warehouse):
    """Warehouse in a BigQuery dataset; the dataset and its three tables are created when missing."""

    def __init__(self, settings: Settings, client: bigquery.Client | None = None) -> None:
        self._client: bigquery.Client | None = client or make_client(settings)
        self.project = self._client.project
        self.dataset = settings.bigquery_dataset
        self.listings_table = f"{self.project}.{self.dataset}.{schema.LISTINGS_TABLE}"
        self.quarantine_table = f"{self.project}.{self.dataset}.{schema.QUARANTINE_TABLE}"
        self.predictions_table = f"{self.project}.{self.dataset}.{PREDICTIONS_TABLE}"
        try:
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            if settings.bigquery_location:  # an explicit null location makes bqemulator answer 500
                dataset.location = settings.bigquery_location
            self._client.create_dataset(dataset, exists_ok=True, retry=_SETUP_RETRY)
            for table_id, (fields, _) in (
                (self.listings_table, LISTINGS),
                (self.quarantine_table, QUARANTINE),
                (self.predictions_table, PREDICTIONS),
            ):
                table = bigquery.Table(table_id, schema=fields)
                # Clustering by batch keeps the per-batch DELETE from scanning the whole table.
                table.clustering_fields = ["batch_id"]
                self._client.create_table(table, exists_ok=True, retry=_SETUP_RETRY)
        except GoogleAPIError as exc:
            raise WarehouseError(f"cannot prepare BigQuery dataset {self.dataset}: {exc}") from exc
        log.debug("opened BigQuery warehouse %s.%s", self.project, self.dataset)

    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            raise WarehouseError("BigQuery warehouse is closed")
        return self._client

    def _run(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run one query job and return its rows as a DataFrame (via Arrow, over REST)."""
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        try:
            rows = self.client.query(sql, job_config=config).result()
            return rows.to_arrow(create_bqstorage_client=False).to_pandas()
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery query failed: {exc}") from exc

    def _replace(
        self,
        table_id: str,
        parquet: Path,
        key: dict[str, str],
        layout: tuple[list[bigquery.SchemaField], str],
        stamp: datetime,
    ) -> int:
        """Load ``parquet`` into a staging table, then one MERGE replaces ``key``'s rows with it.

        The Parquet file holds the table's columns except the key and the stamp, which the MERGE
        fills in, so the rows of one replace share one key and one timestamp.
        """
        fields, stamp_column = layout
        values = [f for f in fields if f.name not in key and f.name != stamp_column]
        staging_id = f"{table_id}__staging_{uuid.uuid4().hex[:12]}"
        staging = bigquery.Table(staging_id, schema=values)
        staging.expires = datetime.now(UTC) + _STAGING_TTL
        config = bigquery.LoadJobConfig(
            schema=values,
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        columns = [f.name for f in fields]
        inserted = [
            f"S.{f.name}" if f.name not in key and f.name != stamp_column else f"@{f.name}" for f in fields
        ]
        params = [bigquery.ScalarQueryParameter(name, "STRING", value) for name, value in key.items()]
        params.append(bigquery.ScalarQueryParameter(stamp_column, "TIMESTAMP", stamp))
        merge = (
            f"MERGE `{table_id}` T USING `{staging_id}` S ON FALSE "
            f"WHEN NOT MATCHED BY SOURCE AND {' AND '.join(f'T.{k} = @{k}' for k in key)} THEN DELETE "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) VALUES ({', '.join(inserted)})"
        )
        try:
            self.client.create_table(staging, retry=_SETUP_RETRY)
            with parquet.open("rb") as handle:
                job = self.client.load_table_from_file(handle, staging_id, job_config=config, size=None)
                job.result()
            self._merge(merge, params)
        except (GoogleAPIError, pa.ArrowException) as exc:
            raise WarehouseError(f"loading {key} into {table_id} failed: {exc}") from exc
        finally:
            try:
                self.client.delete_table(staging_id, not_found_ok=True)
            except GoogleAPIError as exc:  # it expires anyway
                log.warning("could not drop staging table %s: %s", staging_id, exc)
        return self._count(table_id, key)

    def _merge(self, sql: str, params: list[Any]) -> None:
        """Run the MERGE; a statement that lost a concurrent-update conflict is run again."""
        for attempt in range(1, _MERGE_ATTEMPTS + 1):
            try:
                self.client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()
                return
            except GoogleAPIError as exc:
                text = str(exc).lower()
                if attempt == _MERGE_ATTEMPTS or not ("concurrent update" in text or "serialize" in text):
                    raise
                log.info("MERGE lost a concurrent update; retrying (%d)", attempt)
                time.sleep(random.uniform(0.5, 2.0) * attempt)

    def _replace_frame(
        self,
        table_id: str,
        frame: pd.DataFrame,
        key: dict[str, str],
        layout: tuple[list[bigquery.SchemaField], str],
        stamp: datetime,
    ) -> int:
        fields, stamp_column = layout
        values = [f for f in fields if f.name not in key and f.name != stamp_column]
        arrow = pa.Table.from_pandas(
            frame[[f.name for f in values]], schema=arrow_schema(values), preserve_index=False
        )
        with tempfile.TemporaryDirectory(prefix="price-alchemy-bq-") as tmp:
            path = Path(tmp) / "rows.parquet"
            pq.write_table(arrow, path)
            return self._replace(table_id, path, key, layout, stamp)

    def _count(self, table_id: str, key: dict[str, str]) -> int:
        params = [bigquery.ScalarQueryParameter(name, "STRING", value) for name, value in key.items()]
        where = " AND ".join(f"{name} = @{name}" for name in key)
        counted = self._run(f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE {where}", params)
        return int(counted["n"].iloc[0])

    def load_batch(self, listings: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        rows = self._replace_frame(
            self.listings_table,
            prepare_listings(listings),
            {"batch_id": batch_id},
            LISTINGS,
            datetime.now(UTC),
        )
        log.info("loaded batch %s: %d listings into %s", batch_id, rows, self.listings_table)
        return rows

    def load_quarantine(self, rejects: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        frame = prepare_quarantine(rejects, batch_id)
        rows = self._replace_frame(
            self.quarantine_table, frame, {"batch_id": batch_id}, QUARANTINE, datetime.now(UTC)
        )
        log.info("quarantined %d rows of batch %s", rows, batch_id)
        return rows

    def read_listings(
        self, *, batch_ids: Sequence[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        if batch_ids is not None and len(batch_ids) == 0:
            return empty_listings()
        columns = ", ".join((*schema.LISTING_COLUMNS, "batch_id"))
        sql = f"SELECT {columns} FROM `{self.listings_table}`"
        params: list[Any] = []
        if batch_ids is not None:
            sql += " WHERE batch_id IN UNNEST(@batch_ids)"
            params.append(bigquery.ArrayQueryParameter("batch_ids", "STRING", list(batch_ids)))
        sql += " ORDER BY batch_id, listing_id"
        if limit is not None:
            sql += " LIMIT @limit"
            params.append(bigquery.ScalarQueryParameter("limit", "INT64", int(limit)))
        frame = self._run(sql, params)
        return coerce_result(frame) if len(frame) else empty_listings()

    def read_quarantine(self, *, batch_id: str | None = None) -> pd.DataFrame:
        sql = f"SELECT * FROM `{self.quarantine_table}`"
        params: list[Any] = []
        if batch_id is not None:
            sql += " WHERE batch_id = @batch_id"
            params.append(bigquery.ScalarQueryParameter("batch_id", "STRING", batch_id))
        sql += " ORDER BY batch_id, line NULLS LAST, listing_id NULLS LAST, stage, reason"
        return coerce_result(self._run(sql, params), nullable_ints=("line", "listing_id"))

    def batches(self) -> pd.DataFrame:
        sql = (
            f"SELECT batch_id, COUNT(*) AS `rows`, MAX(ingested_at) AS ingested_at "
            f"FROM `{self.listings_table}` GROUP BY batch_id ORDER BY ingested_at DESC, batch_id"
        )
        return coerce_result(self._run(sql))

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
            rows = self._replace_frame(
                self.predictions_table, prepare_predictions(predictions), key, PREDICTIONS, scored_at
            )
        else:
            rows = self._replace(self.predictions_table, Path(predictions), key, PREDICTIONS, scored_at)
        log.info("stored %d predictions of batch %s by %s v%s", rows, batch_id, model_name, model_version)
        return rows

    def read_predictions(
        self, *, batch_id: str | None = None, model_version: str | None = None
    ) -> pd.DataFrame:
        conditions, params = [], []
        for column, value in (("batch_id", batch_id), ("model_version", model_version)):
            if value is not None:
                conditions.append(f"{column} = @{column}")
                params.append(bigquery.ScalarQueryParameter(column, "STRING", value))
        sql = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM `{self.predictions_table}`"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY batch_id, model_name, model_version, listing_id"
        return coerce_result(self._run(sql, params))

    def unscored_batches(self, model_name: str, model_version: str) -> pd.DataFrame:
        sql = (
            f"SELECT l.batch_id, COUNT(*) AS `rows`, COUNT(*) - COUNT(p.listing_id) AS unscored "
            f"FROM `{self.listings_table}` l LEFT JOIN `{self.predictions_table}` p "
            "ON p.batch_id = l.batch_id AND p.listing_id = l.listing_id "
            "AND p.model_name = @model_name AND p.model_version = @model_version "
            "AND p.scored_at >= l.ingested_at "
            "GROUP BY l.batch_id HAVING COUNT(p.listing_id) < COUNT(*) ORDER BY l.batch_id"
        )
        params = [
            bigquery.ScalarQueryParameter("model_name", "STRING", model_name),
            bigquery.ScalarQueryParameter("model_version", "STRING", model_version),
        ]
        return coerce_result(self._run(sql, params))

    def _stream(self, sql: str, params: Sequence[Any], chunk_rows: int) -> Iterator[pd.DataFrame]:
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        try:
            rows = self.client.query(sql, job_config=config).result(page_size=chunk_rows)
            for batch in rows.to_arrow_iterable(bqstorage_client=None):
                if batch.num_rows:
                    yield coerce_result(batch.to_pandas())
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery query failed: {exc}") from exc

    def iter_listings(
        self, *, batch_ids: Sequence[str] | None = None, chunk_rows: int = STREAM_ROWS
    ) -> Iterator[pd.DataFrame]:
        if batch_ids is not None and len(batch_ids) == 0:
            return
        columns = ", ".join((*schema.LISTING_COLUMNS, "batch_id"))
        sql = f"SELECT {columns} FROM `{self.listings_table}`"
        params: list[Any] = []
        if batch_ids is not None:
            sql += " WHERE batch_id IN UNNEST(@batch_ids)"
            params.append(bigquery.ArrayQueryParameter("batch_ids", "STRING", list(batch_ids)))
        yield from self._stream(sql + " ORDER BY batch_id, listing_id", params, chunk_rows)

    def iter_query(self, sql: str, *, chunk_rows: int = STREAM_ROWS) -> Iterator[pd.DataFrame]:
        yield from self._stream(self._checked(sql), (), chunk_rows)

    def _checked(self, sql: str) -> str:
        """The query rendered, checked by sqlglot, and confirmed a SELECT by a dry run."""
        rendered = render_query(
            sql,
            listings=f"`{self.listings_table}`",
            quarantine=f"`{self.quarantine_table}`",
            dialect="bigquery",
        )
        try:
            dry = self.client.query(rendered, job_config=bigquery.QueryJobConfig(dry_run=True))
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery refused the query: {exc}") from exc
        if dry.statement_type != "SELECT":
            raise WarehouseError(f"query() accepts SELECT only; BigQuery sees {dry.statement_type}")
        return rendered

    def query(self, sql: str) -> pd.DataFrame:
        return coerce_result(self._run(self._checked(sql)))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
