"""Fixtures that run the real Airflow CLI as subprocesses in an isolated AIRFLOW_HOME.

Import the ``*_fixture`` functions into a test module to use them (pytest registers them under
their ``name``). The metadata DB is migrated once per session (``airflow db migrate``, ~6-10 s) into a template
home and copied into each test's own home, so every test starts from an empty SQLite DB.
Each sandbox also has its own ``PRICE_ALCHEMY_HOME`` (warehouse, MLflow store, reports) and a
small parameters file, so nothing touches the developer's state. When Airflow cannot run the
tests fail (under CI and locally alike): a missing orchestrator must not turn into a green build.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = VENV_BIN / "airflow"
DROPPED_PREFIXES = ("AIRFLOW", "MLFLOW_", "PRICE_ALCHEMY_")
#: A parameters file that trains in seconds (Ridge only, small vocabularies): these tests check the
#: orchestration; model families and quality are tested in tests/model and tests/integration/test_training.
SMALL_PARAMS_YAML = """\
features:
  name_max_features: 5000
  text_max_features: 10000
  char_max_features: 5000
tuning:
  families: [ridge]
"""


def airflow_env(
    airflow_home: Path, price_alchemy_home: Path, params_file: Path | None = None
) -> dict[str, str]:
    """The environment of an isolated Airflow + Price Alchemy: nothing inherited from the shell's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES)}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "PRICE_ALCHEMY_HOME": str(price_alchemy_home),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    if params_file is not None:
        env["PRICE_ALCHEMY_PARAMS_FILE"] = str(params_file)
    return env


def run_logged(
    args: list[str], env: dict[str, str], log_path: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command, keep its combined output in ``log_path`` (and on the result)."""
    if not AIRFLOW.exists():
        pytest.fail(f"airflow is not installed next to {sys.executable}", pytrace=False)
    try:
        proc = subprocess.run(
            args,
            env=env,
            cwd=log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        log_path.write_text(output)
        pytest.fail(
            f"{' '.join(args[:4])} did not finish in {timeout:.0f}s:\n{output[-3000:]}", pytrace=False
        )
    log_path.write_text(proc.stdout)
    return proc


@dataclass
class AirflowSandbox:
    """An isolated Airflow home with its own Price Alchemy home; runs the CLI and reads the DB."""

    root: Path
    airflow_home: Path
    price_alchemy_home: Path
    env: dict[str, str]

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        name = "-".join(a for a in args[:2] if not a.startswith("-"))
        return run_logged([str(AIRFLOW), *args], self.env, self.root / f"airflow-{name}.log", timeout)

    def dags_test(
        self, dag_id: str, *, conf: dict[str, Any], logical_date: str, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.airflow("dags", "test", dag_id, logical_date, "-c", json.dumps(conf), *extra)

    def _query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.airflow_home / "airflow.db") as db:
            return list(db.execute(sql, args))

    def dag_runs(self, dag_id: str) -> list[tuple[str, str]]:
        """``(run_id, state)`` of every run of the DAG in the metadata DB."""
        return [
            (r[0], r[1]) for r in self._query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", dag_id)
        ]

    def task_states(self, dag_id: str) -> dict[str, tuple[str | None, int]]:
        """``task_id -> (state, try_number)`` of the DAG's (single) run."""
        rows = self._query("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ?", dag_id)
        return {r[0]: (r[1], int(r[2])) for r in rows}

    def return_value(self, dag_id: str, task_id: str) -> Any:
        """The task's ``return_value`` XCom, decoded (None when the task pushed nothing)."""
        rows = self._query(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value'",
            dag_id,
            task_id,
        )
        return json.loads(rows[0][0]) if rows else None


@pytest.fixture(scope="session", name="airflow_db_template")
def airflow_db_template_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty Airflow metadata DB, made once per session."""
    home = tmp_path_factory.mktemp("airflow-template")
    env = airflow_env(home, home / "price_alchemy")
    proc = run_logged([str(AIRFLOW), "db", "migrate"], env, home / "migrate.log", timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"airflow db migrate failed ({proc.returncode}):\n{proc.stdout[-3000:]}", pytrace=False)
    return home / "airflow.db"


@pytest.fixture(name="airflow_sandbox")
def airflow_sandbox_fixture(tmp_path: Path, airflow_db_template: Path) -> Iterator[AirflowSandbox]:
    """A fresh AIRFLOW_HOME (copied migrated DB) and PRICE_ALCHEMY_HOME under ``tmp_path``."""
    airflow_home, pa_home = tmp_path / "airflow", tmp_path / "price_alchemy"
    airflow_home.mkdir()
    shutil.copy2(airflow_db_template, airflow_home / "airflow.db")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(SMALL_PARAMS_YAML)
    yield AirflowSandbox(tmp_path, airflow_home, pa_home, airflow_env(airflow_home, pa_home, params_file))
