"""The tuning search on Spark: Hyperopt's ``SparkTrials``, one Spark task per trial.

Same contract as the local search of :func:`price_alchemy.training.tuning.tune`: the same space,
seed and budget, a trial record per trial (failures with their error), each trial a nested MLflow
run of the active run, and the best fitted estimator of each family with its validation
predictions. What differs is where a trial runs:

- the session is the one the environment configures (an active session, spark-defaults.conf,
  ``PYSPARK_SUBMIT_ARGS``, ``MASTER``); when nothing names a master, ``local[N]`` with N =
  ``tuning.spark_parallelism`` (default: the cores), bound to loopback with the web UI off;
- the training data is broadcast once (``SparkContext.broadcast``) and the objective reads
  ``.value`` in the task, so each executor fetches it once instead of with every trial's closure;
- a Spark worker has no MLflow state: the tracking URI, experiment and parent run go to it in a
  :class:`~price_alchemy.mlflow_store.RunTarget` and the worker opens the trial's run there;
- the fitted estimator stays in the worker; the best configuration of each family is refitted on
  the driver after the search (same seed and thread count, so the same predictions).

SparkTrials ships the objective to the Spark workers with cloudpickle: only this module's own
objective goes, to workers this process's Spark configuration points at; nothing is read back but
the trial's result dict (numbers, strings, the sampled configuration).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, fmin, tpe
from hyperopt.base import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW
from hyperopt.exceptions import AllTrialsFailed

from price_alchemy import mlflow_store
from price_alchemy.errors import ConfigError, TrainingError
from price_alchemy.params import TuningParams
from price_alchemy.training.evaluate import rmse
from price_alchemy.training.families import describe, make_estimator, search_space
from price_alchemy.training.tuning import (
    FamilyBest,
    TrialCallback,
    TrialData,
    TrialRecord,
    TuningResult,
    fit_trial,
    startup_trials,
    trial_run_name,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: The master spark-submit falls back to when nothing configures one.
SPARK_DEFAULT_MASTER = "local[*]"
APP_NAME = "price-alchemy-tuning"
#: Settings of a local session this module starts: nothing listens beyond loopback, no web UI.
LOCAL_CONF = {
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.ui.enabled": "false",
}


class Inline:
    """Data held in the objective itself, as a plain closure would hold it (shipped with every
    trial); the baseline the broadcast is measured against. Same ``.value`` as a broadcast."""

    def __init__(self, value: TrialData) -> None:
        self.value = value


@dataclass(frozen=True)
class SparkObjective:
    """What SparkTrials runs in a Spark task for each trial (pickled with it: keep it small).

    ``shared`` is a broadcast of the :data:`TrialData` (or an :class:`Inline` for measurements).
    Returns Hyperopt's result dict plus what the driver needs for the trial table: the run id, the
    sampled configuration, its description, the fit time and the error.
    """

    shared: Any
    target: mlflow_store.RunTarget
    seed: int
    n_jobs: int

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        from pyspark import TaskContext

        family = config["family"]
        record = TrialRecord(0, family, describe(config), None, 0.0)
        with self.target.child_run(f"trial-{family}") as run_id:
            task = TaskContext.get()
            if task is not None:  # None would mean the trial ran on the driver
                mlflow_store.set_tag("spark_task_attempt", str(task.taskAttemptId()))
            fit_trial(record, config, self.shared.value, seed=self.seed, n_jobs=self.n_jobs)
        out: dict[str, Any] = {
            "status": STATUS_FAIL if record.valid_rmsle is None else STATUS_OK,
            "run_id": run_id,
            "config": config,
            "params": record.params,
            "seconds": record.seconds,
            "error": record.error,
        }
        if record.valid_rmsle is not None:
            out["loss"] = record.valid_rmsle
        return out


def shipped_objective(
    context: Any, data: TrialData, target: mlflow_store.RunTarget, seed: int, n_jobs: int
) -> SparkObjective:
    """The objective SparkTrials ships with each trial: the data broadcast once through ``context``
    (each executor fetches it on its first trial), only the broadcast's handle in the objective."""
    return SparkObjective(context.broadcast(data), target, seed, n_jobs)


def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "tuning.backend: spark needs the pyspark package (pip install 'price-alchemy[spark]'; "
            f"Spark 4 runs on Java 17 or 21), which cannot be imported: {exc}"
        ) from exc


def spark_session(slots: int) -> tuple[SparkSession, bool]:
    """The session trials run on, and whether this call started it (then the caller stops it).

    An active session is used as it is (a notebook on Databricks, a job's own session). Otherwise
    Spark's own configuration decides the master; only when it names none (spark-submit's fallback
    ``local[*]``) is it ``local[slots]``. A local master runs this interpreter's Python in its
    workers unless ``PYSPARK_PYTHON`` says otherwise.
    """
    _require_pyspark()
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return _classic(active), False
    started = time.perf_counter()
    try:
        SparkContext._ensure_initialized()  # the JVM, reading spark-defaults and PYSPARK_SUBMIT_ARGS
        master = str(SparkConf().get("spark.master", SPARK_DEFAULT_MASTER))
        builder = SparkSession.builder.appName(APP_NAME)
        if master == SPARK_DEFAULT_MASTER:
            master = f"local[{slots}]"
            builder = builder.master(master)
        if master.startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            for key, value in LOCAL_CONF.items():
                builder = builder.config(key, value)
        session = builder.getOrCreate()
    except Exception as exc:  # no Java, a master that does not answer, ...
        raise TrainingError(f"cannot start Spark for tuning.backend: spark: {exc}") from exc
    log.info("Spark session on %s started in %.1fs", master, time.perf_counter() - started)
    return _classic(session), True


def _classic(session: SparkSession) -> SparkSession:
    try:
        session.sparkContext  # noqa: B018 - raises on Spark Connect
    except Exception as exc:
        raise ConfigError(
            "tuning.backend: spark needs a classic Spark session with a SparkContext (SparkTrials runs "
            "each trial as an RDD job); Spark Connect (SPARK_REMOTE / spark.remote) cannot run it: "
            f"point spark.master at the cluster instead ({exc})"
        ) from exc
    return session


def tune_on_spark(
    data: TrialData,
    params: TuningParams,
    *,
    on_trial: TrialCallback | None = None,
    n_jobs: int = 2,
) -> TuningResult:
    """The search of :func:`~price_alchemy.training.tuning.tune` with SparkTrials (see the module)."""
    session, started = spark_session(params.parallelism)
    try:
        return _search(session, data, params, on_trial)
    finally:
        if started:
            session.stop()


def _search(
    session: SparkSession, data: TrialData, params: TuningParams, on_trial: TrialCallback | None
) -> TuningResult:
    context = session.sparkContext
    task_jobs = int(context.getConf().get("spark.task.cpus", "1") or 1)  # threads a trial may use
    objective = shipped_objective(context, data, mlflow_store.RunTarget.current(), params.seed, task_jobs)
    result = TuningResult()
    configs: dict[int, dict[str, Any]] = {}

    def report(trial: dict[str, Any]) -> None:
        record, run_id, config = _record(trial, params)
        if run_id is not None:
            objective.target.rename(run_id, trial_run_name(record.number, record.family))
        if config is not None:
            configs[record.number] = config
        result.trials.append(record)
        if on_trial is not None:
            on_trial(record)

    trials = _reporting_trials(report, params.parallelism, session)
    log.info("tuning on Spark: %d trials at once, %d thread(s) each", trials.parallelism, task_jobs)
    failure: Exception | None = None
    try:
        fmin(
            objective,
            search_space(params),
            algo=partial(tpe.suggest, n_startup_jobs=startup_trials(params)),
            max_evals=params.max_evals,
            timeout=params.timeout_s,
            trials=trials,
            rstate=np.random.default_rng(params.seed),
            show_progressbar=False,
        )
    except AllTrialsFailed:
        log.warning("every tuning trial failed")
    except Exception as exc:  # hyperopt's "no evaluation tasks" when every Spark task errored
        failure = exc
    finally:
        trials.report_remaining()
        objective.shared.unpersist()
    if failure is not None:
        if not result.trials or any(r.valid_rmsle is not None for r in result.trials):
            raise failure
        log.warning("no tuning trial finished: %s", failure)
    result.trials.sort(key=lambda r: r.number)
    _refit_best(result, configs, data, params.seed, task_jobs)
    log.info(
        "tuning on Spark done: %d trials, best per family: %s",
        len(result.trials),
        {name: round(b.valid_rmsle, 4) for name, b in result.best.items()},
    )
    return result


def _record(
    trial: dict[str, Any], params: TuningParams
) -> tuple[TrialRecord, str | None, dict[str, Any] | None]:
    """A trial record from a finished SparkTrials trial document, its run id and configuration."""
    number = int(trial["tid"]) + 1
    choice = (trial["misc"].get("vals") or {}).get("family") or [0]
    family = params.families[int(choice[0])] if len(params.families) > int(choice[0]) else "?"
    outcome = trial.get("result") or {}
    if trial["state"] == JOB_STATE_DONE and "run_id" in outcome:
        loss = outcome.get("loss")
        record = TrialRecord(
            number,
            family,
            dict(outcome["params"]),
            None if loss is None else float(loss),
            float(outcome["seconds"]),
            outcome.get("error"),
        )
        return record, str(outcome["run_id"]), dict(outcome["config"]) if loss is not None else None
    kind, detail = (trial["misc"].get("error") or ("error", "no detail"))[:2]
    why = "cancelled" if trial["state"] == JOB_STATE_CANCEL else "Spark task failed"
    last = str(detail or "").strip().splitlines()[-1:] or [str(kind)]
    return TrialRecord(number, family, {}, None, 0.0, f"{why}: {last[0]}"[:500]), None, None


def _reporting_trials(report: Callable[[dict[str, Any]], None], parallelism: int, session: Any) -> Any:
    """SparkTrials that hand each finished trial to ``report`` as the search goes (fmin refreshes
    its trials often), and the rest (cancelled, last ones) at the end."""
    from hyperopt.spark import SparkTrials

    reported: set[int] = set()

    def finished(trial: dict[str, Any]) -> bool:
        # A trial's state is written before its result or error: wait for both.
        if trial["state"] == JOB_STATE_DONE:
            return "run_id" in (trial.get("result") or {})
        return trial["state"] == JOB_STATE_ERROR and "error" in trial["misc"]

    class ReportingSparkTrials(SparkTrials):
        def refresh(self) -> None:
            super().refresh()
            for trial in list(self._dynamic_trials):
                if trial["tid"] not in reported and finished(trial):
                    reported.add(trial["tid"])
                    report(trial)

        def report_remaining(self) -> None:
            for trial in list(self._dynamic_trials):
                if trial["tid"] not in reported and trial["state"] != JOB_STATE_NEW:
                    reported.add(trial["tid"])
                    report(trial)

    return ReportingSparkTrials(parallelism=parallelism, spark_session=session)


def _refit_best(
    result: TuningResult, configs: dict[int, dict[str, Any]], data: TrialData, seed: int, n_jobs: int
) -> None:
    """Fit the best configuration of each family again here (the trial's estimator stayed in its
    worker), with the trial's seed and thread count: the same model and validation predictions."""
    X_train, y_train_log, X_valid, y_valid_log = data
    ranked = sorted((r for r in result.trials if r.valid_rmsle is not None), key=lambda r: r.valid_rmsle or 0)
    for record in ranked:
        if record.family in result.best or record.number not in configs:
            continue
        config = configs[record.number]
        estimator = make_estimator(config, seed=seed, n_jobs=n_jobs).fit(X_train, y_train_log)
        valid_log_pred = np.clip(estimator.predict(X_valid), 0.0, None)
        score = rmse(y_valid_log, valid_log_pred)
        if not np.isclose(score, record.valid_rmsle or 0.0, rtol=0, atol=1e-6):
            log.warning(
                "refit of trial %d scored %.6f, the trial %.6f", record.number, score, record.valid_rmsle
            )
        result.best[record.family] = FamilyBest(config, estimator, valid_log_pred, score)
