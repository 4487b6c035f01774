"""The BigQuery side of the warehouse contract: table layouts, their Arrow schemas, the client.

Kept apart from :mod:`~price_alchemy.data.warehouse.bigquery_backend` (which moves the data) so
the layouts -- what a load job's Parquet file must look like -- read in one place.
"""

from __future__ import annotations

import pyarrow as pa
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPIError
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from price_alchemy.config import Settings
from price_alchemy.errors import WarehouseError

Layout = tuple[list[bigquery.SchemaField], str]

Field = bigquery.SchemaField
# (BigQuery schema, matching Arrow schema). REQUIRED columns are written as non-nullable
# Parquet columns so a load job's schema agrees with the table's on the real service.
LISTINGS: Layout = (
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
QUARANTINE: Layout = (
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
PREDICTIONS: Layout = (
    [
        Field("listing_id", "INT64", mode="REQUIRED"),
        Field("batch_id", "STRING", mode="REQUIRED"),
        Field("price", "FLOAT64", mode="REQUIRED"),
        Field("price_low", "FLOAT64"),
        Field("price_high", "FLOAT64"),
        Field("model_name", "STRING", mode="REQUIRED"),
        Field("model_version", "STRING", mode="REQUIRED"),
        Field("scored_at", "TIMESTAMP", mode="REQUIRED"),
        Field("flags", "STRING"),
    ],
    "scored_at",
)
_ARROW_TYPES = {
    "INT64": pa.int64(),
    "STRING": pa.string(),
    "FLOAT64": pa.float64(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(fields: list[bigquery.SchemaField]) -> pa.Schema:
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
