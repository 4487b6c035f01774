"""
### price_alchemy_training: ingest -> validate -> tune -> fit + evaluate -> register -> promote

Trains a Price Alchemy model on the listings in the warehouse and registers it in MLflow as
`price-alchemy`; the version becomes `champion` only if it beats the current champion on the same
test rows by `promotion.margin` (the decision and both scores are on the version and in the
`promote` task's return value).

**How a run gets its data**

| run | what `choose_source` does | trains on |
|---|---|---|
| manual, default params | ingests synthetic listings generated for the logical date | every listing in the warehouse |
| manual, `input_path` set | ingests that file (validated; bad rows quarantined) | every listing in the warehouse |
| manual, `query` set | skips ingestion | the rows the query selects |
| triggered by the `price_alchemy/warehouse/listings` asset | skips ingestion: `price_alchemy_ingest` has just validated and loaded a batch | every listing in the warehouse |

A batch that fails validation fails `validate_and_load` (no retry: the data will not change) with
the failed checks in the message, and nothing is trained. Its quarantined rows are in the task log
and in `price-alchemy quarantine`. This DAG never emits the asset it is scheduled on, so ingesting
here does not schedule a second run. When `promote` makes a new champion it updates the asset
`price_alchemy/registry/champion` (through the asset alias `price_alchemy/registry/promotions`, so a
version that is not promoted emits nothing), and `price_alchemy_batch_scoring` re-prices the
warehouse with it.

**Params**: `input_path` (a listings file), `query` (a warehouse SELECT where `{listings}` names
the listings table), `rows` (synthetic sample size), `max_evals` and `timeout` (tuning budget in
trials and seconds; empty = the parameters file). The MLflow parent run id is the return value of
`tune`, the model version that of `register`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetAlias, Param, dag, task

LISTINGS = Asset("price_alchemy/warehouse/listings")
CHAMPION = Asset("price_alchemy/registry/champion")
PROMOTIONS = AssetAlias("price_alchemy/registry/promotions")
INGEST_TASK = "extract_batch"


@dag(
    dag_id="price_alchemy_training",
    schedule=[LISTINGS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["price_alchemy", "training", "mlflow"],
    doc_md=__doc__,
    default_args={"owner": "price_alchemy", "retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        "input_path": Param(None, type=["null", "string"], description="Listings file to ingest first."),
        "query": Param(
            None, type=["null", "string"], description="Train on this warehouse SELECT ({listings})."
        ),
        "rows": Param(2000, type="integer", minimum=200, description="Synthetic listings to generate."),
        "max_evals": Param(None, type=["null", "integer"], minimum=1, description="Tuning trials."),
        "timeout": Param(None, type=["null", "number"], minimum=1, description="Tuning seconds."),
    },
)
def price_alchemy_training() -> None:
    @task.branch
    def choose_source(**context: Any) -> str | None:
        """Ingest a new batch first, unless the run is asset-triggered or trains on a query."""
        run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
        if run_type == "asset_triggered" or context["params"]["query"]:
            return None  # skips extract + validate; tune runs on the warehouse (trigger rule)
        return INGEST_TASK

    @task(task_id=INGEST_TASK)
    def extract_batch(**context: Any) -> dict[str, Any]:
        from price_alchemy.tasks import extract_batch

        day = context.get("logical_date") or context["dag_run"].run_after
        params = context["params"]
        return extract_batch(day.isoformat(), input_path=params["input_path"], rows=params["rows"])

    @task
    def validate_and_load(batch: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from price_alchemy.errors import DataValidationError
        from price_alchemy.tasks import validate_and_load

        try:
            return validate_and_load(batch["path"], batch_id=batch["batch_id"])
        except DataValidationError as exc:  # deterministic: retrying cannot help
            raise AirflowFailException(f"DataValidationError: {exc}") from exc

    @task(trigger_rule="none_failed")
    def tune(**context: Any) -> dict[str, Any]:
        from price_alchemy.tasks import tune

        params, run = context["params"], context["dag_run"]
        return tune(
            query=params["query"],
            max_evals=params["max_evals"],
            timeout=params["timeout"],
            source=f"airflow:{run.dag_id}:{run.run_id}",
        )

    @task
    def fit_and_evaluate(tuned: dict[str, Any]) -> dict[str, Any]:
        from price_alchemy.tasks import fit_and_evaluate

        return fit_and_evaluate(tuned["run_id"], query=tuned["query"], batch_ids=tuned["batch_ids"])

    @task
    def register(evaluated: dict[str, Any]) -> dict[str, Any]:
        from price_alchemy.tasks import register

        return register(evaluated)

    @task(outlets=[PROMOTIONS])
    def promote(registered: dict[str, Any], tuned: dict[str, Any], **context: Any) -> dict[str, Any]:
        from price_alchemy.tasks import promote

        decision = promote(registered["version"], query=tuned["query"], batch_ids=tuned["batch_ids"])
        if decision["promoted"]:  # only a new champion re-prices the warehouse
            extra = {k: decision[k] for k in ("model_name", "version")}
            context["outlet_events"][PROMOTIONS].add(CHAMPION, extra=extra)
        return decision

    # XComArgs typed Any: TaskFlow passes them as the task's return value at run time.
    batch: Any = extract_batch()
    loaded: Any = validate_and_load(batch)
    tuned: Any = tune()
    evaluated: Any = fit_and_evaluate(tuned)
    registered: Any = register(evaluated)
    choose_source() >> batch
    loaded >> tuned
    promote(registered, tuned)


price_alchemy_training()
