"""``airflow dags test price_alchemy_monitoring`` with a real Elasticsearch node and MLflow store.

One sandbox (Airflow home + Price Alchemy home) holds a tiny champion trained in-process. Two
runs of the monitoring DAG, for two windows of indexed request events:

- undrifted traffic: ``check_drift`` succeeds and says so, ``should_retrain`` short-circuits, the
  trigger is skipped and no training run exists;
- drifted traffic: the trigger task succeeds and a ``price_alchemy_training`` run
  ``drift_retrain__<day>`` is created (queued, ``operator_triggered``, with the retraining conf).
  ``dags test`` runs only the DAG under test, so the triggered run stays queued: creating it is
  what the monitoring DAG is responsible for.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import pytest
from airflow_fixtures import (  # the *_fixture imports register the fixtures of this module
    AirflowSandbox,
    airflow_db_template_fixture,  # noqa: F401
    airflow_sandbox_fixture,  # noqa: F401
)
from drift_traffic import index_events, shift_listings, traffic
from elasticsearch import Elasticsearch

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.monitoring.templates import ensure_templates
from price_alchemy.params import Params
from price_alchemy.training.stages import run_training

pytestmark = pytest.mark.integration

MONITORING, TRAINING = "price_alchemy_monitoring", "price_alchemy_training"
CALM_END = datetime(2025, 6, 2, 12, tzinfo=UTC)
DRIFT_END = datetime(2025, 6, 3, 12, tzinfo=UTC)


def _run(sandbox: AirflowSandbox, end: datetime) -> tuple[str, dict[str, str | None], Any, str]:
    """Run the DAG for the window ending at ``end``; its run id, task states, verdict XCom, output."""
    proc = sandbox.dags_test(
        MONITORING, conf={"end": end.isoformat(), "window_hours": 24}, logical_date=end.isoformat()
    )
    logical = end.strftime("%Y-%m-%d %H:%M:%S")
    rows = sandbox._query(
        "SELECT run_id FROM dag_run WHERE dag_id = ? AND logical_date LIKE ?", MONITORING, f"{logical}%"
    )
    assert len(rows) == 1, proc.stdout[-4000:]
    run_id = rows[0][0]
    states = dict(
        sandbox._query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", MONITORING, run_id
        )
    )
    xcom = sandbox._query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = 'check_drift' AND key = 'return_value'",
        MONITORING,
        run_id,
    )
    verdict = json.loads(xcom[0][0]) if xcom else None
    return run_id, states, verdict, proc.stdout


def test_monitoring_dag_triggers_training_only_on_drift(
    airflow_sandbox: AirflowSandbox,
    elasticsearch_node: Any,
    es_clean: Elasticsearch,
    settings_factory: Any,
    params: Params,
    synthetic_listings: Any,
) -> None:
    sandbox = airflow_sandbox
    settings = settings_factory(sandbox.price_alchemy_home)
    trained = run_training(synthetic_listings, settings, params, source="test:monitoring-dag")
    predict = mlflow.sklearn.load_model(trained.model_uri).predict
    ensure_templates(es_clean)
    calm = generate_listings(1000, seed=31, start_id=10**8)
    index_events(
        es_clean,
        [
            *traffic(
                calm, predict, CALM_END - timedelta(hours=20), CALM_END, model_version=trained.model_version
            ),
            *traffic(
                shift_listings(generate_listings(1000, seed=32)),
                predict,
                DRIFT_END - timedelta(hours=20),
                DRIFT_END,
                model_version=trained.model_version,
            ),
        ],
    )
    sandbox.env["PRICE_ALCHEMY_ELASTICSEARCH_URL"] = elasticsearch_node.url

    _, states, verdict, out = _run(sandbox, CALM_END)
    assert states == {"check_drift": "success", "should_retrain": "success", "trigger_training": "skipped"}, (
        out[-4000:]
    )
    assert verdict["drifted"] is False and verdict["trigger_retraining"] is False
    assert verdict["listings"] == 1000 and verdict["model_version"] == trained.model_version
    assert sandbox.dag_runs(TRAINING) == []

    _, states, verdict, out = _run(sandbox, DRIFT_END)
    assert states == {"check_drift": "success", "should_retrain": "success", "trigger_training": "success"}, (
        out[-4000:]
    )
    assert verdict["drifted"] is True and "top_category" in verdict["drifted_features"]
    triggered = sandbox._query("SELECT run_id, state, run_type, conf FROM dag_run WHERE dag_id = ?", TRAINING)
    assert len(triggered) == 1, triggered
    run_id, state, run_type, conf = triggered[0]
    assert run_id == "drift_retrain__2025-06-03" and state == "queued" and run_type == "operator_triggered"
    assert json.loads(conf) == {"query": "SELECT * FROM {listings}"}
    # The verdicts are on disk and in the monitoring index, as for the CLI.
    assert len(list((sandbox.price_alchemy_home / "reports" / "drift").glob("drift-*.html"))) == 2
    es_clean.indices.refresh(index="price-alchemy-monitoring-*")
    assert es_clean.count(index="price-alchemy-monitoring-*")["count"] == 2 * 8
