"""Hyperopt TPE search over model families on precomputed sparse features.

The featurizer is fitted once on the training split and its output reused by every trial, so a
trial costs only an estimator fit. Each trial is a nested MLflow run under the active parent run.
Trials run here one after another, or as Spark tasks (``tuning.backend: spark``, :mod:`.spark_tuning`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, space_eval, tpe
from hyperopt.exceptions import AllTrialsFailed

from price_alchemy import mlflow_store
from price_alchemy.params import TuningParams
from price_alchemy.training.evaluate import rmse
from price_alchemy.training.families import describe, make_estimator, search_space

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    number: int
    family: str
    params: dict[str, Any]
    valid_rmsle: float | None
    seconds: float
    error: str | None = None


@dataclass
class FamilyBest:
    """The best trial of one family: its config, fitted estimator and validation predictions (log)."""

    config: dict[str, Any]
    estimator: Any
    valid_log_pred: np.ndarray
    valid_rmsle: float


@dataclass
class TuningResult:
    trials: list[TrialRecord] = field(default_factory=list)
    best: dict[str, FamilyBest] = field(default_factory=dict)

    @property
    def best_family(self) -> FamilyBest:
        if not self.best:
            raise RuntimeError("no trial succeeded")
        return min(self.best.values(), key=lambda b: b.valid_rmsle)


TrialCallback = Callable[[TrialRecord], None]
#: What every trial fits and scores on: X_train, y_train_log, X_valid, y_valid_log.
TrialData = tuple[Any, np.ndarray, Any, np.ndarray]


def fit_trial(
    record: TrialRecord,
    config: dict[str, Any],
    data: TrialData,
    *,
    seed: int,
    n_jobs: int,
) -> tuple[Any, np.ndarray | None]:
    """Fit and score one configuration inside its (already open) MLflow run; fills ``record``.

    Returns the fitted estimator and its clipped validation predictions (log), or ``(None, None)``
    when the fit failed: the error goes to ``record.error`` and the run's ``error`` tag, since a
    bad corner of the space must not end the search. Shared by the local and the Spark search.
    """
    X_train, y_train_log, X_valid, y_valid_log = data
    started = time.perf_counter()
    mlflow_store.log_params(record.params)
    estimator: Any = None
    valid_log_pred: np.ndarray | None = None
    try:
        estimator = make_estimator(config, seed=seed, n_jobs=n_jobs).fit(X_train, y_train_log)
        valid_log_pred = np.clip(estimator.predict(X_valid), 0.0, None)
        record.valid_rmsle = rmse(y_valid_log, valid_log_pred)
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {exc}"
        log.warning("trial %d (%s) failed: %s", record.number, record.family, record.error)
        mlflow_store.set_tag("error", record.error[:500])
        estimator, valid_log_pred = None, None
    record.seconds = time.perf_counter() - started
    mlflow_store.log_metric("fit_seconds", record.seconds)
    if record.valid_rmsle is not None:
        mlflow_store.log_metric("valid_rmsle", record.valid_rmsle)
    return estimator, valid_log_pred


def trial_run_name(number: int, family: str) -> str:
    return f"trial-{number:03d}-{family}"


def startup_trials(params: TuningParams) -> int:
    """Random trials before TPE models the results (the same on both backends)."""
    return max(3, min(10, params.max_evals // 3))


def tune(
    X_train: Any,
    y_train_log: np.ndarray,
    X_valid: Any,
    y_valid_log: np.ndarray,
    params: TuningParams,
    *,
    on_trial: TrialCallback | None = None,
    n_jobs: int = 2,
) -> TuningResult:
    """Run TPE for ``params.max_evals`` trials or ``params.timeout_s`` seconds, whichever ends first.

    Failed trials are recorded (and logged to MLflow) with their error instead of aborting the search.
    With ``params.backend == "spark"`` the trials run as Spark tasks (:mod:`.spark_tuning`), with the
    same result: trial records, nested runs, the best fitted estimator of each family.
    """
    data: TrialData = (X_train, y_train_log, X_valid, y_valid_log)
    if params.backend == "spark":
        from price_alchemy.training.spark_tuning import tune_on_spark

        return tune_on_spark(data, params, on_trial=on_trial, n_jobs=n_jobs)
    result = TuningResult()

    def objective(config: dict[str, Any]) -> dict[str, Any]:
        number = len(result.trials) + 1
        family = config["family"]
        record = TrialRecord(number, family, describe(config), None, 0.0)
        with mlflow_store.run(run_name=trial_run_name(number, family), nested=True):
            estimator, valid_log_pred = fit_trial(record, config, data, seed=params.seed, n_jobs=n_jobs)
        result.trials.append(record)
        if on_trial is not None:
            on_trial(record)
        if record.valid_rmsle is None or valid_log_pred is None:
            return {"status": STATUS_FAIL}
        best = result.best.get(family)
        if best is None or record.valid_rmsle < best.valid_rmsle:
            result.best[family] = FamilyBest(config, estimator, valid_log_pred, record.valid_rmsle)
        return {"status": STATUS_OK, "loss": record.valid_rmsle}

    try:
        fmin(
            objective,
            search_space(params),
            algo=partial(tpe.suggest, n_startup_jobs=startup_trials(params)),
            max_evals=params.max_evals,
            timeout=params.timeout_s,
            trials=Trials(),
            rstate=np.random.default_rng(params.seed),
            show_progressbar=False,
        )
    except AllTrialsFailed:  # every trial is recorded with its error; the caller decides
        log.warning("every one of %d tuning trials failed", len(result.trials))
    log.info(
        "tuning done: %d trials, best per family: %s",
        len(result.trials),
        {name: round(b.valid_rmsle, 4) for name, b in result.best.items()},
    )
    return result


def blend_weights(valid_log_preds: dict[str, np.ndarray], y_valid_log: np.ndarray) -> dict[str, float]:
    """Convex weights minimising validation RMSLE (exhaustive grid for 2 models, else equal start + NNLS)."""
    names = list(valid_log_preds)
    if len(names) == 1:
        return {names[0]: 1.0}
    preds = np.column_stack([valid_log_preds[n] for n in names])
    if len(names) == 2:
        grid = np.linspace(0.0, 1.0, 41)
        scores = [rmse(y_valid_log, preds @ np.array([w, 1.0 - w])) for w in grid]
        w = float(grid[int(np.argmin(scores))])
        return {names[0]: w, names[1]: 1.0 - w}
    from scipy.optimize import nnls

    weights, _ = nnls(preds, y_valid_log)
    total = weights.sum() or 1.0
    return {n: float(wt / total) for n, wt in zip(names, weights, strict=True)}


__all__ = [
    "FamilyBest",
    "TrialData",
    "TrialRecord",
    "TuningResult",
    "blend_weights",
    "fit_trial",
    "space_eval",
    "tune",
]
