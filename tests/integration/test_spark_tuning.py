"""``tuning.backend: spark``: the search on Hyperopt's SparkTrials, in Spark's local mode on this
machine's Java, against the local search on the same data, seed and budget.

The same small search (ridge, 3 random start-up trials, the shared synthetic listings) runs with
both backends under one parent MLflow run each; the Spark one must give the same trial table, the
same best trial, nested runs under its parent opened in Spark tasks, and a final pipeline that
prices listings exactly as the local one does. Failed trials come back with their error, and the
objective shipped per trial does not carry the training data (it is broadcast once).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
from real_services import unavailable

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.training.search import FittedModel, fit_tuned_model
from price_alchemy.training.tuning import TrialRecord, tune

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOTS = 2
TRIALS = 3  # all random start-up trials: the same proposals on both backends


@dataclass
class Searched:
    settings: Settings
    params: Params
    local: FittedModel
    spark: FittedModel
    local_run: str
    spark_run: str
    reported: list[TrialRecord]
    test_rows: pd.DataFrame
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark session started the way the search starts one (the search then uses it)."""
    pytest.importorskip("pyspark")
    from price_alchemy.errors import TrainingError
    from price_alchemy.training.spark_tuning import spark_session

    had_python = "PYSPARK_PYTHON" in os.environ
    started = time.perf_counter()
    try:
        session, created = spark_session(SLOTS)
    except TrainingError as exc:
        unavailable("Spark (local mode on Java)", str(exc))
    seconds = time.perf_counter() - started
    print(f"\nSpark session start-up: {seconds:.1f}s")
    assert created
    try:
        yield session
    finally:
        session.stop()
        if not had_python:
            os.environ.pop("PYSPARK_PYTHON", None)


@pytest.fixture(scope="module")
def searched(
    spark: Any,
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[[Path], Settings],
    params: Params,
    synthetic_listings: pd.DataFrame,
    mlflow_reset: Callable[[], None],
) -> Iterator[Searched]:
    settings = settings_factory(tmp_path_factory.mktemp("spark-tuning") / "home")
    local_params = params.with_budget(max_evals=TRIALS, timeout=120)
    spark_params = local_params.model_copy(
        update={
            "tuning": local_params.tuning.model_copy(update={"backend": "spark", "spark_parallelism": SLOTS})
        }
    )
    train, valid, test = (
        synthetic_listings.iloc[s] for s in (slice(0, 1100), slice(1100, 1350), slice(1350, None))
    )
    seconds: dict[str, float] = {}
    reported: list[TrialRecord] = []
    try:
        mlflow_store.configure(settings)
        with mlflow_store.run(run_name="local-search") as local_run:
            started = time.perf_counter()
            local = fit_tuned_model(train, valid, local_params)
            seconds["local"] = time.perf_counter() - started
        with mlflow_store.run(run_name="spark-search") as spark_run:
            started = time.perf_counter()
            on_spark = fit_tuned_model(train, valid, spark_params, on_trial=reported.append)
            seconds["spark"] = time.perf_counter() - started
        print(f"search + final fit: local {seconds['local']:.1f}s, spark {seconds['spark']:.1f}s")
        yield Searched(settings, spark_params, local, on_spark, local_run, spark_run, reported, test, seconds)
    finally:
        mlflow_reset()


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _table(model: FittedModel) -> list[tuple[int, str, dict[str, Any], float | None, str | None]]:
    return [(r.number, r.family, r.params, r.valid_rmsle, r.error) for r in model.tuning.trials]


def test_the_spark_search_gives_the_local_trial_table_and_best_trial(searched: Searched) -> None:
    local, on_spark = _table(searched.local), _table(searched.spark)
    assert [row[0] for row in on_spark] == list(range(1, TRIALS + 1))
    assert len({row[2]["ridge.alpha"] for row in on_spark}) == TRIALS  # distinct proposals
    for mine, theirs in zip(on_spark, local, strict=True):
        assert mine[:3] == theirs[:3] and mine[4] is None and theirs[4] is None
        assert mine[3] == pytest.approx(theirs[3], abs=1e-9)
    best_local, best_spark = searched.local.tuning.best_family, searched.spark.tuning.best_family
    assert best_spark.config == best_local.config
    assert best_spark.valid_rmsle == pytest.approx(min(row[3] or 9.0 for row in on_spark), abs=1e-9)
    np.testing.assert_allclose(best_spark.valid_log_pred, best_local.valid_log_pred, atol=1e-9)
    assert searched.spark.outcome == searched.local.outcome  # configs, weights, scores, trials, features


def test_each_trial_was_reported_as_it_finished(searched: Searched) -> None:
    assert sorted(r.number for r in searched.reported) == list(range(1, TRIALS + 1))
    assert all(r.valid_rmsle is not None and r.seconds > 0 for r in searched.reported)


def test_each_spark_trial_is_a_nested_run_opened_in_a_spark_task(searched: Searched) -> None:
    mlflow_store.configure(searched.settings)  # each test starts without MLflow state
    runs = mlflow_store.search_runs(
        searched.settings, filter_string=f"tags.mlflow.parentRunId = '{searched.spark_run}'"
    )
    assert len(runs) == TRIALS
    assert set(runs["status"]) == {"FINISHED"}
    by_name = runs.set_index("tags.mlflow.runName")
    records = {f"trial-{r.number:03d}-{r.family}": r for r in searched.spark.tuning.trials}
    assert set(by_name.index) == set(records)
    for name, record in records.items():
        assert by_name.loc[name, "metrics.valid_rmsle"] == pytest.approx(record.valid_rmsle, abs=1e-9)
        assert by_name.loc[name, "params.ridge.alpha"] == str(record.params["ridge.alpha"])
    # Set from Spark's TaskContext, which exists only in a task: the trials did not run on the driver.
    assert runs["tags.spark_task_attempt"].notna().all()
    everything = mlflow_store.search_runs(searched.settings)
    assert len(everything) == 2 + 2 * TRIALS  # two parents, their trials: nothing stray


def test_the_pipeline_from_the_spark_search_prices_like_the_local_one(searched: Searched) -> None:
    rows = searched.test_rows[list(FEATURE_COLUMNS)]
    prices = searched.spark.pipeline.predict(rows)
    assert prices.shape == (len(rows),) and np.isfinite(prices).all() and (prices > 0).all()
    np.testing.assert_allclose(prices, searched.local.pipeline.predict(rows), rtol=1e-9)


def test_failed_trials_come_back_with_their_error_on_both_backends(
    searched: Searched, tmp_path: Path, settings_factory: Callable[[Path], Settings]
) -> None:
    settings = settings_factory(tmp_path / "home")
    mlflow_store.configure(settings)
    X = np.eye(40)
    bad_y = np.ones(30)  # fewer targets than rows: every fit fails
    records = {}
    for backend in ("local", "spark"):
        params = searched.params.tuning.model_copy(update={"backend": backend, "max_evals": 2})
        with mlflow_store.run(run_name=f"failing-{backend}") as parent:
            result = tune(X, bad_y, X, np.ones(40), params)
        assert not result.best
        records[backend] = [(r.number, r.family, r.valid_rmsle) for r in result.trials]
        assert all(r.error and r.error.startswith("ValueError: ") for r in result.trials), result.trials
        runs = mlflow_store.search_runs(settings, filter_string=f"tags.mlflow.parentRunId = '{parent}'")
        assert len(runs) == 2 and runs["tags.error"].str.startswith("ValueError").all()
    assert records["spark"] == records["local"] == [(1, "ridge", None), (2, "ridge", None)]


def test_the_objective_shipped_per_trial_carries_no_training_data(spark: Any) -> None:
    from pyspark import cloudpickle

    from price_alchemy.training.spark_tuning import Inline, SparkObjective, shipped_objective

    rng = np.random.default_rng(0)
    X = rng.random((2000, 200))
    data = (X, rng.random(2000), X[:500], rng.random(500))
    data_bytes = sum(part.nbytes for part in data)
    target = mlflow_store.RunTarget("sqlite:////tmp/nowhere.db", "0", None)
    objective = shipped_objective(spark.sparkContext, data, target, 42, 1)
    try:
        shipped = len(cloudpickle.dumps(objective))
        inline = len(cloudpickle.dumps(SparkObjective(Inline(data), target, 42, 1)))
        assert objective.shared.value[0] is not None  # the data is reachable through the handle
    finally:
        objective.shared.unpersist()
    print(
        f"per trial: {shipped:,} bytes with the broadcast, {inline:,} with the data inline ({data_bytes:,})"
    )
    assert shipped < 2_000
    assert inline > data_bytes


def test_a_session_started_here_is_local_on_loopback_without_a_web_ui(spark: Any) -> None:
    from price_alchemy.training.spark_tuning import spark_session

    conf = spark.sparkContext.getConf()
    assert conf.get("spark.master") == f"local[{SLOTS}]"
    assert conf.get("spark.ui.enabled") == "false"
    again, created = spark_session(8)  # an active session is used as it is, not restarted
    assert again is spark and created is False
    jvms = [p for p in psutil.Process().children(recursive=True) if "java" in p.name()]
    assert jvms
    listening = {c.laddr.ip for p in jvms for c in p.net_connections(kind="inet") if c.status == "LISTEN"}
    assert listening and all(_loopback(ip) for ip in listening), listening
    rss = sum(p.memory_info().rss for p in jvms) / 2**20
    print(f"Spark JVM resident memory: {rss:.0f} MiB")


def test_a_master_from_spark_s_own_configuration_is_respected(spark: Any, tmp_path: Path) -> None:
    """PYSPARK_SUBMIT_ARGS (as spark-defaults.conf, MASTER) names the master: no local[N] override.

    In a fresh process, since this one already has its JVM."""
    script = (
        "from price_alchemy.training.spark_tuning import spark_session\n"
        "session, created = spark_session(2)\n"
        "print('MASTER', session.sparkContext.master, created)\n"
        "session.stop()\n"
    )
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": "--master local[1] pyspark-shell"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MASTER local[1] True" in done.stdout
