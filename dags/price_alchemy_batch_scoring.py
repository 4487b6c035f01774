"""
### price_alchemy_batch_scoring: price the listings that have no price from the champion

Prices listings with the current champion of `price-alchemy` and writes them to the warehouse
table `predictions` (listing id, batch id, price, 80% range low/high, model name and version,
`scored_at`, flags), in DuckDB or BigQuery (a load job into a staging table, then one `MERGE`).

**When it runs**

| trigger | what it prices |
|---|---|
| the `price_alchemy/warehouse/listings` asset (`price_alchemy_ingest` loaded a validated batch) | every batch with a listing that has no prediction from the champion |
| the `price_alchemy/registry/champion` asset (`price_alchemy_training` promoted a new champion) | everything again, with the new champion |
| manual, default params | the same: what is open for the champion |
| manual, `query` set | the rows of that warehouse SELECT (`{listings}`), as batch `query-<hash>` |
| manual, `input_path` set | that listings file, read leniently, as batch `<file stem>-<content hash>` |

**Idempotent per batch and model version**: a batch is priced whole and replaces its rows for that
version atomically; a rerun finds nothing open (or replaces the same rows). Predictions of older
champions stay, one set per version. Work is chunked (memory stays flat) and spread over one
worker process per core; progress is in the task log, the counts per batch in the return value.

A listing whose fields are missing or invalid is priced with them taken as unknown and flagged
`imputed:<fields>`; one without any usable content gets the fallback price (the model's median
training prediction) and the flag `fallback`, without a range.

Before the first champion exists (listings loaded before any training), the task is **skipped**
with the reason in its log: the promotion of the first champion triggers the DAG again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

LISTINGS = Asset("price_alchemy/warehouse/listings")
CHAMPION = Asset("price_alchemy/registry/champion")


@dag(
    dag_id="price_alchemy_batch_scoring",
    schedule=(LISTINGS | CHAMPION),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["price_alchemy", "scoring", "warehouse"],
    doc_md=__doc__,
    default_args={"owner": "price_alchemy", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "query": Param(
            None, type=["null", "string"], description="Price this warehouse SELECT ({listings})."
        ),
        "input_path": Param(None, type=["null", "string"], description="Price this listings file."),
    },
)
def price_alchemy_batch_scoring() -> None:
    @task
    def score_listings(**context: Any) -> dict[str, Any]:
        from price_alchemy.tasks import score_listings

        params = context["params"]
        result = score_listings(query=params["query"], input_path=params["input_path"])
        if result.get("skipped"):
            # Skipped, not failed: the UI shows why, and the next champion asset re-runs the DAG.
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(result["reason"])
        return result

    score_listings()


price_alchemy_batch_scoring()
