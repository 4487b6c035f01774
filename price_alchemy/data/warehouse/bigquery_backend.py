"""BigQuery warehouse through the official ``google-cloud-bigquery`` client.

How a batch is replaced, and why:

* The old copy is removed with a parameterised DML ``DELETE``, then the new rows arrive through
  a **load job** from a Parquet file. Streaming inserts are avoided on purpose: rows in the
  streaming buffer cannot be touched by DML for up to 90 minutes, which would break the next
  reload of the same batch on real BigQuery. Load jobs are also free of charge.
* The Parquet file is sent with a *resumable* upload (``load_table_from_file(size=None)``).
  The client's multipart upload (used for files under 5 MiB) labels the media part ``*/*``,
  which real BigQuery accepts but bqemulator 1.4.0 rejects ("unsupported Content-Type '*/*'",
  upstream PR jjviscomi/bqemulator#266); resumable uploads work on both.
* Delete and load are two jobs, not one transaction: a failure between them leaves the batch
  absent (never doubled), and rerunning the task repairs it.
* Results are fetched with ``to_arrow()`` over the REST API, so neither ``db-dtypes`` nor the
  BigQuery Storage API is needed (``to_dataframe`` requires the former).
* ``query()`` passes the shared sqlglot check (BigQuery dialect: one SELECT over the two
  tables, no table functions such as ``EXTERNAL_QUERY``, no other dataset), then asks BigQuery
  itself, with a dry run, whether the statement is a SELECT.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPIError
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from price_alchemy import schema
from price_alchemy.config import Settings
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

Field = bigquery.SchemaField
# (BigQuery schema, matching Arrow schema). REQUIRED columns are written as non-nullable
# Parquet columns so a load job's schema agrees with the table's on the real service.
_LISTINGS = (
    [
        Field("listing_id", "INT64", mode="REQUIRED"),
        Field("name", "STRING"),
        Field("item_condition_id", "INT64", mode="REQUIRED"),
        Field("category_name", "STRING"),
        Field("brand_name", "STRING"),
        Field("shipping", "INT64", mode="REQUIRED"),
        Field("item_description", "STRING"),
        Field("price", "FLOAT64"),
        Field("batch_id", "STRING", mode="REQUIRED"),
        Field("ingested_at", "TIMESTAMP", mode="REQUIRED"),
    ],
    "ingested_at",
)
_QUARANTINE = (
    [
        Field("batch_id", "STRING", mode="REQUIRED"),
        Field("stage", "STRING"),
        Field("line", "INT64"),
        Field("listing_id", "INT64"),
        Field("reason", "STRING"),
        Field("raw", "STRING"),
        Field("quarantined_at", "TIMESTAMP", mode="REQUIRED"),
    ],
    "quarantined_at",
)
# Dataset/table creation retries transient errors for 2 minutes, not the client's default 10.
_SETUP_RETRY = bigquery.DEFAULT_RETRY.with_timeout(120.0)
_ARROW_TYPES = {
    "INT64": pa.int64(),
    "STRING": pa.string(),
    "FLOAT64": pa.float64(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def _arrow_schema(fields: list[bigquery.SchemaField]) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.field_type], nullable=f.mode != "REQUIRED") for f in fields]
    )


def make_client(settings: Settings) -> bigquery.Client:
    """A client for the configured project: emulator endpoint (anonymous), key file, or ADC."""
    try:
        if settings.bigquery_api_endpoint:
            return bigquery.Client(
                project=settings.bigquery_project or "test-project",
                location=settings.bigquery_location,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=settings.bigquery_api_endpoint),
            )
        if settings.bigquery_credentials_file:
            return bigquery.Client.from_service_account_json(
                str(settings.bigquery_credentials_file),
                project=settings.bigquery_project,
                location=settings.bigquery_location,
            )
        return bigquery.Client(project=settings.bigquery_project, location=settings.bigquery_location)
    except (GoogleAuthError, GoogleAPIError, OSError, ValueError) as exc:
        raise WarehouseError(f"cannot create a BigQuery client: {exc}") from exc


class BigQueryWarehouse(Warehouse):
    """Warehouse in a BigQuery dataset; the dataset and both tables are created when missing."""

    def __init__(self, settings: Settings, client: bigquery.Client | None = None) -> None:
        self._client: bigquery.Client | None = client or make_client(settings)
        self.project = self._client.project
        self.dataset = settings.bigquery_dataset
        self.listings_table = f"{self.project}.{self.dataset}.{schema.LISTINGS_TABLE}"
        self.quarantine_table = f"{self.project}.{self.dataset}.{schema.QUARANTINE_TABLE}"
        try:
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            if settings.bigquery_location:  # an explicit null location makes bqemulator answer 500
                dataset.location = settings.bigquery_location
            self._client.create_dataset(dataset, exists_ok=True, retry=_SETUP_RETRY)
            for table_id, (fields, _) in (
                (self.listings_table, _LISTINGS),
                (self.quarantine_table, _QUARANTINE),
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

    def _count(self, table_id: str, batch_id: str) -> int:
        param = bigquery.ScalarQueryParameter("batch_id", "STRING", batch_id)
        counted = self._run(f"SELECT COUNT(*) AS n FROM `{table_id}` WHERE batch_id = @batch_id", [param])
        return int(counted["n"].iloc[0])

    def _replace_batch(
        self,
        table_id: str,
        frame: pd.DataFrame,
        batch_id: str,
        layout: tuple[list[bigquery.SchemaField], str],
    ) -> int:
        fields, stamp_column = layout
        param = bigquery.ScalarQueryParameter("batch_id", "STRING", batch_id)
        self._run(f"DELETE FROM `{table_id}` WHERE batch_id = @batch_id", [param])
        if len(frame):
            frame = frame.assign(batch_id=batch_id, **{stamp_column: pd.Timestamp(datetime.now(UTC))})
            arrow = pa.Table.from_pandas(
                frame[[f.name for f in fields]], schema=_arrow_schema(fields), preserve_index=False
            )
            config = bigquery.LoadJobConfig(
                schema=fields,
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            )
            try:
                with tempfile.TemporaryFile(suffix=".parquet") as buffer:
                    pq.write_table(arrow, buffer)
                    buffer.seek(0)
                    job = self.client.load_table_from_file(buffer, table_id, job_config=config, size=None)
                    job.result()
            except (GoogleAPIError, pa.ArrowException) as exc:
                raise WarehouseError(f"loading batch {batch_id!r} into {table_id} failed: {exc}") from exc
        return self._count(table_id, batch_id)

    def load_batch(self, listings: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        rows = self._replace_batch(self.listings_table, prepare_listings(listings), batch_id, _LISTINGS)
        log.info("loaded batch %s: %d listings into %s", batch_id, rows, self.listings_table)
        return rows

    def load_quarantine(self, rejects: pd.DataFrame, batch_id: str) -> int:
        check_batch_id(batch_id)
        frame = prepare_quarantine(rejects, batch_id)
        rows = self._replace_batch(self.quarantine_table, frame, batch_id, _QUARANTINE)
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

    def query(self, sql: str) -> pd.DataFrame:
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
        return coerce_result(self._run(rendered))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
