"""
### price_alchemy_ingest: the daily batch of new listings -> validated -> warehouse -> asset

Every day, takes that day's batch of listings, validates it with Great Expectations and loads
its valid rows into the warehouse `listings` table (bad rows go to `listings_quarantine` with
their reason). When the batch passes, `validate_and_load` updates the asset
`price_alchemy/warehouse/listings` (the event's extra says which batch and how many rows), and
Airflow schedules `price_alchemy_training`, which retrains on the warehouse: new validated data
leads to a new challenger, and to a new champion only if it is better.

A batch that fails validation fails the task (no retry), updates no asset and triggers no
training; its quarantine and report are kept.

**Params**: `input_path`, the file holding the day's listings (Kaggle train format, any supported
compression); when empty, a stand-in feed generates `rows` synthetic listings deterministically from
the logical date. Both are idempotent for the logical date: a rerun replaces the same batch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

LISTINGS = Asset("price_alchemy/warehouse/listings")


@dag(
    dag_id="price_alchemy_ingest",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["price_alchemy", "ingest", "great_expectations"],
    doc_md=__doc__,
    default_args={"owner": "price_alchemy", "retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "input_path": Param(None, type=["null", "string"], description="The day's listings file."),
        "rows": Param(2000, type="integer", minimum=200, description="Synthetic listings when no file."),
    },
)
def price_alchemy_ingest() -> None:
    @task
    def extract_batch(**context: Any) -> dict[str, Any]:
        from price_alchemy.tasks import extract_batch

        day = context.get("logical_date") or context["dag_run"].run_after
        params = context["params"]
        return extract_batch(day.isoformat(), input_path=params["input_path"], rows=params["rows"])

    @task(outlets=[LISTINGS])
    def validate_and_load(batch: dict[str, Any], **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from price_alchemy.errors import DataValidationError
        from price_alchemy.tasks import validate_and_load

        try:
            loaded = validate_and_load(batch["path"], batch_id=batch["batch_id"])
        except DataValidationError as exc:  # deterministic: retrying cannot help
            raise AirflowFailException(f"DataValidationError: {exc}") from exc
        context["outlet_events"][LISTINGS].extra = {
            k: loaded[k] for k in ("batch_id", "loaded", "quarantined", "warehouse_rows")
        }
        return loaded

    batch: Any = extract_batch()  # an XComArg: the task's return value at run time
    validate_and_load(batch)


price_alchemy_ingest()
