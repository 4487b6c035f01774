"""Model search and final fit on in-memory splits (no registry; MLflow only for the trial runs).

``search`` tunes on train/valid and returns a small, JSON-able :class:`SearchOutcome` (which
families, which configurations, which blend weights); ``fit_final`` turns an outcome into one
fitted Pipeline. Keeping the outcome small lets an orchestrator run the two in separate tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from price_alchemy import mlflow_store
from price_alchemy.errors import TrainingError
from price_alchemy.estimators import WeightedBlend
from price_alchemy.features import build_featurizer, build_pipeline
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.training.evaluate import rmse
from price_alchemy.training.families import make_estimator
from price_alchemy.training.tuning import TrialCallback, TuningResult, blend_weights, tune

log = logging.getLogger(__name__)
StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class SearchOutcome:
    """What the search decided: the configuration of each blended family and its weight."""

    configs: dict[str, dict[str, Any]]
    weights: dict[str, float]
    valid_rmsle: dict[str, float]
    blend_valid_rmsle: float | None
    n_trials: int
    n_features: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchOutcome:
        return cls(**data)


@dataclass
class FittedModel:
    """The final pipeline plus what the search found (for logging and benchmarks)."""

    pipeline: Pipeline
    outcome: SearchOutcome
    tuning: TuningResult

    @property
    def weights(self) -> dict[str, float]:
        return self.outcome.weights


def _choose_weights(
    result: TuningResult, y_valid_log: np.ndarray, blend: bool
) -> tuple[dict[str, float], float | None]:
    best = result.best_family
    single = {best.config["family"]: 1.0}
    if not blend or len(result.best) < 2:
        return single, None
    weights = blend_weights({n: b.valid_log_pred for n, b in result.best.items()}, y_valid_log)
    blended = sum(w * result.best[n].valid_log_pred for n, w in weights.items())
    score = rmse(y_valid_log, np.asarray(blended))
    chosen = {n: w for n, w in weights.items() if w > 0} if score < best.valid_rmsle else single
    return chosen, score


def search(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: Params,
    *,
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> tuple[SearchOutcome, TuningResult]:
    """Featurize once (fitted on train), run the Hyperopt search, choose the blend on valid."""
    stage = on_stage or (lambda message: log.info("%s", message))
    columns = list(FEATURE_COLUMNS)
    stage(f"featurizing {len(train):,} train rows")
    featurizer = build_featurizer(params.features)
    X_train = featurizer.fit_transform(train[columns])
    X_valid = featurizer.transform(valid[columns])
    y_train_log = np.log1p(train[PRICE].to_numpy(dtype=np.float64))
    y_valid_log = np.log1p(valid[PRICE].to_numpy(dtype=np.float64))

    tune_rows = min(X_train.shape[0], params.training.tune_max_rows)
    stage(
        f"tuning on {tune_rows:,} rows: up to {params.tuning.max_evals} trials / {params.tuning.timeout_s:g}s"
    )
    result = tune(
        X_train[:tune_rows], y_train_log[:tune_rows], X_valid, y_valid_log, params.tuning, on_trial=on_trial
    )
    if not result.best:
        raise TrainingError("every tuning trial failed; see the nested MLflow runs for errors")
    weights, blend_score = _choose_weights(result, y_valid_log, params.training.blend)
    outcome = SearchOutcome(
        configs={name: result.best[name].config for name in weights},
        weights=weights,
        valid_rmsle={name: best.valid_rmsle for name, best in result.best.items()},
        blend_valid_rmsle=blend_score,
        n_trials=len(result.trials),
        n_features=int(X_train.shape[1]),
    )
    return outcome, result


def fit_final(train: pd.DataFrame, valid: pd.DataFrame, params: Params, outcome: SearchOutcome) -> Pipeline:
    """Fit the searched configuration (or blend) from scratch as one Pipeline.

    Fitted on train (+ valid when ``training.refit_on_valid``); the test split never enters.
    """
    fit_rows = pd.concat([train, valid], ignore_index=True) if params.training.refit_on_valid else train
    log.info("fitting the final %s model on %d rows", " + ".join(outcome.weights), len(fit_rows))
    members = [(n, make_estimator(outcome.configs[n], seed=params.tuning.seed)) for n in outcome.weights]
    estimator: Any = (
        members[0][1] if len(members) == 1 else WeightedBlend(members, list(outcome.weights.values()))
    )
    pipeline = build_pipeline(build_featurizer(params.features), estimator)
    pipeline.fit(fit_rows[list(FEATURE_COLUMNS)], fit_rows[PRICE].to_numpy(dtype=np.float64))
    return pipeline


def fit_tuned_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: Params,
    *,
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> FittedModel:
    """``search`` then ``fit_final``: the whole modelling step on in-memory splits."""
    outcome, result = search(train, valid, params, on_stage=on_stage, on_trial=on_trial)
    if on_stage is not None:
        on_stage(f"fitting the final {' + '.join(outcome.weights)} model")
    if mlflow_store.active_run_id() is not None and outcome.blend_valid_rmsle is not None:
        mlflow_store.log_metric("valid_rmsle_blend", outcome.blend_valid_rmsle)
    return FittedModel(fit_final(train, valid, params, outcome), outcome, result)
