"""The batch scoring DAG, run by the real Airflow CLI (``airflow dags test``) on DuckDB.

- the DAG is wired as designed: scheduled on the listings asset or the champion asset, one thin
  task, params ``query`` and ``input_path``; the names match ``price_alchemy.names``;
- after a training run (which promotes, and so emits the champion asset), the DAG prices every
  warehouse listing into ``predictions`` with the champion, with a range, and says so in its
  return value and task log;
- a rerun prices nothing and leaves the table as it was; a new champion re-prices everything,
  keeping the old version's rows;
- a file given as ``input_path`` is priced leniently: damaged listings are flagged, not lost.
"""

from __future__ import annotations

import json
import sqlite3
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
from damaged_listings import write_damaged_file
from test_dags import DAGBAG_SCRIPT

from price_alchemy import mlflow_store, names
from price_alchemy.config import Settings
from price_alchemy.data.warehouse import open_warehouse

pytestmark = pytest.mark.integration

SCORING, TRAINING = names.BATCH_SCORING_DAG, "price_alchemy_training"
ROWS = 1500
TRAIN_RUN = {"rows": ROWS, "max_evals": 2, "timeout": 15}


def _fail(proc: Any, message: str) -> str:
    return f"{message}\n--- airflow output (tail) ---\n{proc.stdout[-4000:]}"


def test_scoring_dag_structure_and_names(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "airflow", tmp_path / "price_alchemy")
    proc = run_logged([sys.executable, "-c", DAGBAG_SCRIPT, str(DAGS_FOLDER)], env, tmp_path / "bag.log", 120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DAGBAG_JSON="))
    bag = json.loads(line.removeprefix("DAGBAG_JSON="))
    assert bag["import_errors"] == {} and bag["heavy_modules"] == []
    dag = bag["dags"][SCORING]
    assert dag["upstream"] == {"score_listings": []}
    assert dag["timetable"] == "AssetTriggeredTimetable"
    assert dag["schedule_assets"] == sorted([names.LISTINGS_ASSET, names.CHAMPION_ASSET])
    assert dag["params"] == ["input_path", "query"] and dag["outlets"] == {}
    assert dag["catchup"] is False and dag["retries"] >= 1 and dag["has_doc"] and dag["max_active_runs"] == 1
    assert dag["start_date"].startswith("2025-01-01T00:00:00")
    # the names the DAG files spell out (they cannot import the package) are the package's names
    assert bag["dags"][TRAINING]["outlets"] == {"promote": [names.CHAMPION_ALIAS_EVENTS]}
    assert bag["dags"][TRAINING]["schedule_assets"] == [names.LISTINGS_ASSET]
    assert bag["dags"]["price_alchemy_ingest"]["outlets"] == {"validate_and_load": [names.LISTINGS_ASSET]}


def _asset_events(sandbox: AirflowSandbox) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(sandbox.airflow_home / "airflow.db") as db:
        rows = db.execute(
            "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()
    return [(name, json.loads(extra or "{}")) for name, extra in rows]


def _score(
    sandbox: AirflowSandbox, date: str, conf: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    proc = sandbox.dags_test(SCORING, conf=conf or {}, logical_date=date)
    runs = sandbox.dag_runs(SCORING)
    assert runs and runs[-1][1] == "success", _fail(proc, f"runs {runs}")
    rows = sandbox._query(
        "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'score_listings' AND key = 'return_value' "
        "AND run_id = ?",
        SCORING,
        runs[-1][0],
    )
    return proc, json.loads(rows[0][0])


def test_scoring_dag_before_any_champion_is_skipped_not_failed(airflow_sandbox: AirflowSandbox) -> None:
    """Listings loaded before the first training: the task is skipped, with the reason in its log."""
    proc = airflow_sandbox.dags_test(SCORING, conf={}, logical_date="2025-06-02")
    states = airflow_sandbox._query(
        "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = 'score_listings'", SCORING
    )
    assert states == [("skipped",)], _fail(proc, f"task states {states}")
    assert "is champion yet: nothing scored" in proc.stdout


def test_scoring_dag_prices_the_warehouse_once_per_champion(airflow_sandbox: AirflowSandbox) -> None:
    sandbox = airflow_sandbox
    trained = sandbox.dags_test(TRAINING, conf=TRAIN_RUN, logical_date="2025-06-01")
    assert sandbox.return_value(TRAINING, "promote")["promoted"] is True, _fail(trained, "training")
    events = _asset_events(sandbox)
    assert (names.CHAMPION_ASSET, {"model_name": "price-alchemy", "version": "1"}) in events

    proc, first = _score(sandbox, "2025-06-02")
    assert first["model"] == "price-alchemy v1" and first["source"] == "warehouse"
    assert first["batches_scored"] == 1 and first["rows"] == ROWS and first["stored"] == ROWS
    assert first["batches"][0]["batch_id"] == "synthetic_20250601"
    assert "priced" in proc.stdout and "predictions stored" in proc.stdout  # the task log says it

    settings = Settings(_env_file=None, home=sandbox.price_alchemy_home, warehouse="duckdb")
    with open_warehouse(settings) as warehouse:
        stored = warehouse.read_predictions()
        listed = warehouse.read_listings()
    assert sorted(stored["listing_id"]) == sorted(listed["listing_id"])
    assert set(stored["model_version"]) == {"1"} and (stored["price"] > 0).all()
    assert ((stored["price_low"] <= stored["price"]) & (stored["price"] <= stored["price_high"])).all()
    assert stored["price"].nunique() > ROWS // 2  # the model's prices, not a constant

    _, again = _score(sandbox, "2025-06-03")  # nothing is open: nothing is priced or rewritten
    assert again["batches_scored"] == 0 and again["rows"] == 0
    with open_warehouse(settings) as warehouse:
        unchanged = warehouse.read_predictions()
    assert len(unchanged) == ROWS and (unchanged["scored_at"] == stored["scored_at"]).all()

    # a new champion (the same model registered again, then promoted by hand) re-prices everything
    mlflow_store.configure(settings)
    champion = mlflow_store.lookup_alias(settings, names.CHAMPION)
    model_uri = f"runs:/{champion.run_id}/{names.MODEL_ARTIFACT}"
    version = mlflow_store.register_model(
        settings, model_uri, {"run_id": str(champion.run_id), "test_rmsle": "0.5"}
    )
    mlflow_store.set_alias(settings, names.CHAMPION, version)
    _, renewed = _score(sandbox, "2025-06-04")
    assert renewed["model_version"] == version == "2" and renewed["rows"] == ROWS
    with open_warehouse(settings) as warehouse:
        both = warehouse.read_predictions()
    assert both.groupby("model_version").size().to_dict() == {"1": ROWS, "2": ROWS}
    v1, v2 = (both[both["model_version"] == v].set_index("listing_id")["price"] for v in ("1", "2"))
    assert (v1.sort_index() == v2.sort_index()).all()  # the same model gives the same prices


def test_scoring_dag_prices_a_damaged_file_leniently(airflow_sandbox: AirflowSandbox, tmp_path: Path) -> None:
    sandbox = airflow_sandbox
    trained = sandbox.dags_test(TRAINING, conf=TRAIN_RUN, logical_date="2025-06-01")
    assert sandbox.return_value(TRAINING, "promote")["promoted"] is True, _fail(trained, "training")
    damage = write_damaged_file(tmp_path / "test.tsv", n=300, seed=4)

    _, result = _score(sandbox, "2025-06-02", {"input_path": str(damage.path)})
    assert result["source"] == "file" and result["batches"][0]["batch_id"].startswith("test-")
    assert result["stored"] == 300 and result["fallback"] == len(damage.fallback)
    settings = Settings(_env_file=None, home=sandbox.price_alchemy_home, warehouse="duckdb")
    with open_warehouse(settings) as warehouse:
        stored = warehouse.read_predictions().set_index("listing_id")
    assert sorted(stored.index) == damage.ids
    assert (stored.loc[sorted(damage.fallback), "flags"] == "fallback").all()
    assert stored.loc[sorted(damage.fallback), "price_low"].isna().all()  # no calibrated range
    assert stored.loc[10, "flags"] == "imputed:shipping"
