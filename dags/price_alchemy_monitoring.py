"""
### price_alchemy_monitoring: drift of recent requests -> retraining when the inputs moved

Every hour, `check_drift` compares the listings of the requests served in the last
`monitoring.window_hours` (default 24 h, a rolling window) with the training profile of the
`champion` model, feature by feature, by the Population Stability Index (condition, shipping, top
category, top brands, name and description length, predicted price). It indexes one document per
feature and a summary into `price-alchemy-monitoring-YYYY.MM` (the Kibana drift panel), writes an
HTML report under `$PRICE_ALCHEMY_HOME/reports/drift/` and logs it to the MLflow experiment
`price-alchemy-monitoring`. Its return value is the verdict (`status`, `drifted`, `psi` per feature,
`report`, `mlflow_run_id`).

When the window **drifted** (some feature at or above its drift threshold, with at least
`monitoring.min_listings` listings), `should_retrain` lets `trigger_training` start
`price_alchemy_training` on every listing of the warehouse; otherwise both are skipped. The
triggered run id is `drift_retrain__<logical date>`: at most one drift-triggered retraining per
day, however many hourly checks see the drift. The new model still becomes champion only if it
beats the current one.

No champion yet fails `check_drift` at once (retrying cannot create one); an unreachable
Elasticsearch is retried.

**Params**: `end` (ISO end of the window; empty = the end of the run's data interval),
`window_hours` (empty = the parameters file).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

TRAINING_DAG = "price_alchemy_training"
#: What the triggered training run trains on: every validated listing in the warehouse.
RETRAIN_CONF = {"query": "SELECT * FROM {listings}"}


@dag(
    dag_id="price_alchemy_monitoring",
    schedule="@hourly",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["price_alchemy", "monitoring", "drift"],
    doc_md=__doc__,
    default_args={"owner": "price_alchemy", "retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "end": Param(
            None, type=["null", "string"], description="ISO end of the window (default: run's end)."
        ),
        "window_hours": Param(
            None, type=["null", "number"], exclusiveMinimum=0, description="Window length in hours."
        ),
    },
)
def price_alchemy_monitoring() -> None:
    @task
    def check_drift(**context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from price_alchemy.errors import ModelNotFoundError
        from price_alchemy.tasks import check_drift

        params = context["params"]
        end = params["end"] or (context.get("data_interval_end") or context["dag_run"].run_after).isoformat()
        try:
            return check_drift(end, window_hours=params["window_hours"])
        except ModelNotFoundError as exc:  # no champion: retrying cannot help
            raise AirflowFailException(f"ModelNotFoundError: {exc}") from exc

    @task.short_circuit
    def should_retrain(verdict: dict[str, Any]) -> bool:
        """Continue to the trigger only when the window drifted (and retraining is enabled)."""
        return bool(verdict["trigger_retraining"])

    trigger = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id=TRAINING_DAG,
        # Keyed by the day the drifted window ends (from the verdict, not the logical date: a run
        # triggered from the UI or REST without one has no `ds`): one retraining per day of drift.
        trigger_run_id="drift_retrain__{{ ti.xcom_pull(task_ids='check_drift')['window_end'][:10] }}",
        conf=RETRAIN_CONF,
        skip_when_already_exists=True,
        wait_for_completion=False,
    )
    verdict: Any = check_drift()
    should_retrain(verdict) >> trigger


price_alchemy_monitoring()
