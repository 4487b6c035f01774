"""The Airflow DAGs, run by the real Airflow CLI in an isolated home.

- the DAG files import without errors, quickly and without importing the package's heavy stack;
  the DAG ids, tasks, dependencies, trigger rules, params and the asset wiring are as designed;
- ``airflow dags test price_alchemy_training`` on synthetic data ingests, trains, registers and
  promotes: MLflow then holds a version with a test RMSLE tag and the ``champion`` alias;
- a batch failing validation (prices in cents) fails the run at ``validate_and_load`` without a
  retry, quarantines its bad rows and trains and registers nothing;
- a run given a warehouse query skips ingestion and still reaches the training tasks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import (  # the *_fixture imports register the fixtures of this module
    DAGS_FOLDER,
    AirflowSandbox,
    airflow_db_template_fixture,  # noqa: F401
    airflow_env,
    airflow_sandbox_fixture,  # noqa: F401
    run_logged,
)
from mlflow.tracking import MlflowClient

from price_alchemy.config import Settings
from price_alchemy.data.files import write_listings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.data.warehouse import open_warehouse

pytestmark = pytest.mark.integration

TRAINING, INGEST, MONITORING = "price_alchemy_training", "price_alchemy_ingest", "price_alchemy_monitoring"
ASSET = "price_alchemy/warehouse/listings"
TRAINING_TASKS = ("tune", "fit_and_evaluate", "register", "promote")
LOGICAL_DATE = "2025-06-01"
#: Tiny budget: 2 trials within 15 s on 1,500 listings.
SMALL_RUN = {"rows": 1500, "max_evals": 2, "timeout": 15}

# Runs in a fresh interpreter: what a scheduler's DAG processor sees when it parses dags/.
DAGBAG_SCRIPT = """
import json, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag

started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
heavy = ("price_alchemy", "mlflow", "sklearn", "great_expectations", "lightgbm", "duckdb")
out = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
       "parse_seconds": seconds, "heavy_modules": [m for m in heavy if m in sys.modules], "dags": {}}
for dag_id, dag in bag.dags.items():
    condition = getattr(dag.timetable, "asset_condition", None)
    out["dags"][dag_id] = {
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", str(t.trigger_rule)) for t in dag.tasks},
        "outlets": {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks if t.outlets},
        "schedule_assets": sorted(a.name for a in getattr(condition, "objects", [])),
        "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup, "tags": sorted(dag.tags), "params": sorted(dag.params.keys()),
        "retries": dag.default_args.get("retries"), "start_date": dag.start_date.isoformat(),
        "has_doc": bool(dag.doc_md), "max_active_runs": dag.max_active_runs,
    }
print("DAGBAG_JSON=" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("dagbag")
    env = airflow_env(home / "airflow", home / "price_alchemy")
    proc = run_logged(
        [sys.executable, "-c", DAGBAG_SCRIPT, str(DAGS_FOLDER)], env, home / "dagbag.log", timeout=120
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAGBAG_JSON=")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("DAGBAG_JSON="))
    return result


def test_dag_files_import_cleanly_and_cheaply(dagbag: dict[str, Any]) -> None:
    assert dagbag["import_errors"] == {}
    assert set(dagbag["dags"]) == {TRAINING, INGEST, MONITORING, "price_alchemy_batch_scoring"}
    # Task bodies import the package lazily: parsing must not pull in the ML stack.
    assert dagbag["heavy_modules"] == []
    assert dagbag["parse_seconds"] < 5.0


def test_training_dag_structure(dagbag: dict[str, Any]) -> None:
    dag = dagbag["dags"][TRAINING]
    assert dag["upstream"] == {
        "choose_source": [],
        "extract_batch": ["choose_source"],
        "validate_and_load": ["extract_batch"],
        "tune": ["validate_and_load"],
        "fit_and_evaluate": ["tune"],
        "register": ["fit_and_evaluate"],
        "promote": ["register", "tune"],
    }
    # tune must run when ingestion was skipped (asset-triggered or query runs), not when it failed.
    assert dag["trigger_rules"]["tune"] == "none_failed"
    assert {t: r for t, r in dag["trigger_rules"].items() if t != "tune"} == dict.fromkeys(
        set(dag["upstream"]) - {"tune"}, "all_success"
    )
    assert dag["timetable"] == "AssetTriggeredTimetable"
    assert dag["schedule_assets"] == [ASSET]
    # the training DAG must not emit the asset it is scheduled on; promote emits the champion
    # asset through an alias, so only a promotion does (tests/integration/test_batch_scoring_dag.py)
    assert dag["outlets"] == {"promote": ["price_alchemy/registry/promotions"]}
    assert dag["params"] == ["input_path", "max_evals", "query", "rows", "timeout"]
    assert dag["catchup"] is False and dag["retries"] >= 1 and dag["has_doc"]
    assert dag["max_active_runs"] == 1 and "price_alchemy" in dag["tags"]
    assert dag["start_date"].startswith("2025-01-01T00:00:00")


def test_ingest_dag_updates_the_asset_training_is_scheduled_on(dagbag: dict[str, Any]) -> None:
    dag = dagbag["dags"][INGEST]
    assert dag["upstream"] == {"extract_batch": [], "validate_and_load": ["extract_batch"]}
    assert dag["outlets"] == {"validate_and_load": [ASSET]}
    assert dag["schedule_assets"] == [] and dag["timetable"] != "AssetTriggeredTimetable"
    assert dag["params"] == ["input_path", "rows"]
    assert dag["catchup"] is False and dag["retries"] >= 1 and dag["has_doc"]


def test_monitoring_dag_structure(dagbag: dict[str, Any]) -> None:
    dag = dagbag["dags"][MONITORING]
    assert dag["upstream"] == {
        "check_drift": [],
        "should_retrain": ["check_drift"],
        "trigger_training": ["should_retrain"],
    }
    assert set(dag["trigger_rules"].values()) == {"all_success"}
    assert dag["timetable"] == "CronTriggerTimetable" and dag["outlets"] == {}
    assert dag["params"] == ["end", "window_hours"]
    assert dag["catchup"] is False and dag["retries"] >= 1 and dag["has_doc"]
    assert dag["max_active_runs"] == 1 and "monitoring" in dag["tags"]
    assert dag["start_date"].startswith("2025-01-01T00:00:00")


def _fail_with_log(proc: subprocess.CompletedProcess[str], message: str) -> str:
    return f"{message}\n--- airflow output (tail) ---\n{proc.stdout[-4000:]}"


def test_training_dag_end_to_end(airflow_sandbox: AirflowSandbox) -> None:
    sandbox = airflow_sandbox
    proc = sandbox.dags_test(TRAINING, conf=SMALL_RUN, logical_date=LOGICAL_DATE)

    assert sandbox.dag_runs(TRAINING) and sandbox.dag_runs(TRAINING)[0][1] == "success", _fail_with_log(
        proc, f"runs: {sandbox.dag_runs(TRAINING)}, tasks: {sandbox.task_states(TRAINING)}"
    )
    states = sandbox.task_states(TRAINING)
    assert {task: state for task, (state, _) in states.items()} == dict.fromkeys(
        ("choose_source", "extract_batch", "validate_and_load", *TRAINING_TASKS), "success"
    )

    # The synthetic batch of the logical date is in the warehouse, once.
    settings = Settings(_env_file=None, home=sandbox.price_alchemy_home, warehouse="duckdb")
    with open_warehouse(settings) as warehouse:
        batches = warehouse.batches()
    assert batches["batch_id"].tolist() == ["synthetic_20250601"]
    assert int(batches["rows"].iloc[0]) == SMALL_RUN["rows"]

    # XComs are small and name the MLflow run and the version.
    tuned = sandbox.return_value(TRAINING, "tune")
    registered = sandbox.return_value(TRAINING, "register")
    decision = sandbox.return_value(TRAINING, "promote")
    assert tuned["batch_ids"] == ["synthetic_20250601"] and tuned["rows"] == SMALL_RUN["rows"]
    assert registered["run_id"] == tuned["run_id"]
    assert decision["promoted"] is True and decision["version"] == registered["version"]

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    versions = client.search_model_versions("name = 'price-alchemy'")
    assert [str(v.version) for v in versions] == [registered["version"]]
    version = versions[0]
    test_rmsle = float(version.tags["test_rmsle"])
    assert 0.0 < test_rmsle < 1.5
    assert (
        str(client.get_model_version_by_alias("price-alchemy", "champion").version) == registered["version"]
    )
    run = client.get_run(tuned["run_id"])
    assert run.data.metrics["test_rmsle"] == pytest.approx(test_rmsle, abs=1e-5)
    assert run.data.tags["source"].startswith(f"airflow:{TRAINING}:")
    assert run.data.tags["promotion.promoted"] == "True"
    trials = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert 1 <= len(trials) <= SMALL_RUN["max_evals"]


def test_failed_validation_fails_the_run_at_validation_and_trains_nothing(
    airflow_sandbox: AirflowSandbox, tmp_path: Path
) -> None:
    sandbox = airflow_sandbox
    cents = generate_listings(1500, seed=11)
    cents["price"] = cents["price"] * 100  # an upstream unit bug: prices in cents
    path = write_listings(cents, tmp_path / "listings_in_cents.tsv")

    proc = sandbox.dags_test(TRAINING, conf={**SMALL_RUN, "input_path": str(path)}, logical_date=LOGICAL_DATE)

    assert [state for _, state in sandbox.dag_runs(TRAINING)] == ["failed"], _fail_with_log(proc, "run state")
    states = sandbox.task_states(TRAINING)
    assert states["choose_source"][0] == "success" and states["extract_batch"][0] == "success"
    assert states["validate_and_load"] == ("failed", 1), "a failed batch fails at once, without retry"
    assert {task: states[task][0] for task in TRAINING_TASKS} == dict.fromkeys(
        TRAINING_TASKS, "upstream_failed"
    )
    # The reason is readable in the task log: the failed critical checks by name.
    assert "DataValidationError" in proc.stdout and "price_median" in proc.stdout

    settings = Settings(_env_file=None, home=sandbox.price_alchemy_home, warehouse="duckdb")
    with open_warehouse(settings) as warehouse:
        assert warehouse.batches().empty, "nothing of a failed batch may be loaded"
        quarantine = warehouse.read_quarantine()
    assert len(quarantine) > 0 and quarantine["reason"].str.contains("price").all()
    assert not (sandbox.price_alchemy_home / "mlflow.db").exists() or not MlflowClient(
        tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
    ).search_model_versions("name = 'price-alchemy'")


def test_query_run_skips_ingestion_and_still_trains(airflow_sandbox: AirflowSandbox) -> None:
    """Branching: with a query (as for asset-triggered runs) ingestion is skipped, tune still runs.

    The training tasks are marked successful without running (``--mark-success-pattern``):
    this checks the wiring, the end-to-end test checks the training.
    """
    sandbox = airflow_sandbox
    conf = {**SMALL_RUN, "query": "SELECT * FROM {listings}"}
    proc = sandbox.dags_test(
        TRAINING,
        conf=conf,
        logical_date=LOGICAL_DATE,
        extra=("--mark-success-pattern", "^(" + "|".join(TRAINING_TASKS) + ")$"),
    )
    states = {task: state for task, (state, _) in sandbox.task_states(TRAINING).items()}
    assert states == {
        "choose_source": "success",
        "extract_batch": "skipped",
        "validate_and_load": "skipped",
        **dict.fromkeys(TRAINING_TASKS, "success"),
    }, _fail_with_log(proc, f"states: {states}")
    assert not (sandbox.price_alchemy_home / "batches").exists()
