"""The training job as four resumable stages sharing one parent MLflow run.

``tune_stage`` (search, nested trial runs) -> ``fit_stage`` (final fit, test metrics against the
rules baseline, plots, reference profile, logged model) -> ``register_stage`` (registered version)
-> ``promote_stage`` (challenger/champion decision). Each stage takes the listings and small
identifiers (run id, model URI, version) and recomputes the deterministic split, so an orchestrator
can run them as separate tasks; ``run_training`` runs all four in one process.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from price_alchemy.config import Settings
from price_alchemy.errors import TrainingError
from price_alchemy.estimators import TRUSTED_TYPES, MedianPriceBaseline
from price_alchemy.params import Params
from price_alchemy.profile import histogram, top_category
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.split import Split, split_listings
from price_alchemy.training import plots
from price_alchemy.training.evaluate import regression_metrics
from price_alchemy.training.registry import PromotionDecision, decide_promotion
from price_alchemy.training.search import (
    FittedModel,
    SearchOutcome,
    StageCallback,
    fit_final,
    fit_tuned_model,
    search,
)
from price_alchemy.training.tracking import configure_mlflow
from price_alchemy.training.tuning import TrialCallback, TuningResult

log = logging.getLogger(__name__)
OUTCOME_ARTIFACT = "search/outcome.json"

__all__ = [
    "EvaluatedModel",
    "FittedModel",
    "TrainingResult",
    "fit_stage",
    "fit_tuned_model",
    "promote_stage",
    "register_stage",
    "run_training",
    "tune_stage",
    "usable_for_training",
]


@dataclass(frozen=True)
class EvaluatedModel:
    """What ``fit_stage`` produced: the logged model and its test scores (JSON-able, XCom-sized)."""

    run_id: str
    model_uri: str
    test_metrics: dict[str, float]
    baseline_metrics: dict[str, float]


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_uri: str
    model_version: str
    test_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    decision: PromotionDecision
    n_trials: int
    sizes: dict[str, int]
    seconds: float


def model_requirements() -> list[str]:
    """Pinned runtime requirements of a saved model (explicit: MLflow's inference loads the model again)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in ("price-alchemy", "scikit-learn", "lightgbm", "pandas", "numpy", "scipy", "skops", "mlflow"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


def usable_for_training(listings: pd.DataFrame) -> pd.DataFrame:
    """Rows with a positive price: price-0 listings are not sales signal (Kaggle's own advice)."""
    price = pd.to_numeric(listings[PRICE], errors="coerce")
    return listings[price > 0].reset_index(drop=True)


def _log_evaluation_plots(split: Split, y_pred: np.ndarray, baseline_pred: np.ndarray) -> None:
    y_true = split.test[PRICE].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(y_true, y_pred, folder / "predicted_vs_actual.png")
        plots.residuals_by_category(split.test, y_pred, folder / "residuals_by_category.png")
        plots.error_by_price_band(y_true, y_pred, baseline_pred, folder / "error_by_price_band.png")
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")


def reference_profile(train: pd.DataFrame, predictions: np.ndarray) -> dict[str, Any]:
    """Distributions of the training inputs and predictions, kept with the model for drift checks."""
    top = top_category(train["category_name"])

    def shares(series: pd.Series, limit: int = 20) -> dict[str, float]:
        return {str(k): float(v) for k, v in series.value_counts(normalize=True).head(limit).items()}

    return {
        "rows": len(train),
        "item_condition_id": shares(train["item_condition_id"]),
        "shipping": shares(train["shipping"]),
        "top_category": shares(top),
        "brand_name": shares(train["brand_name"].fillna("(missing)")),
        "name_length_quantiles": train["name"].fillna("").str.len().quantile([0.1, 0.5, 0.9]).tolist(),
        "description_length_quantiles": train["item_description"]
        .fillna("")
        .str.len()
        .quantile([0.1, 0.5, 0.9])
        .tolist(),
        "prediction_quantiles": np.quantile(predictions, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist(),
        # Fixed bins (training deciles) and their shares: the drift monitor counts served listings
        # into these same bins to compute the Population Stability Index per feature.
        "histograms": {
            "name_length": histogram(train["name"].fillna("").str.len().to_numpy()),
            "description_length": histogram(train["item_description"].fillna("").str.len().to_numpy()),
            "prediction": histogram(np.asarray(predictions, dtype=np.float64)),
        },
    }


INTERVAL_COVERAGE = 0.8


def price_interval(
    y_true: np.ndarray, y_pred: np.ndarray, coverage: float = INTERVAL_COVERAGE
) -> dict[str, Any]:
    """A price range calibrated on held-out rows (split conformal, in log space).

    The ``(1 - coverage) / 2`` and ``(1 + coverage) / 2`` quantiles of ``log1p(actual) -
    log1p(predicted)`` on the test split, which the final model never saw. A suggestion ``p`` gets
    the range ``expm1(log1p(p) + low) .. expm1(log1p(p) + high)``: about ``coverage`` of held-out
    listings sold inside the range they would have been given. Log space, because errors scale
    with price.
    """
    residuals = np.log1p(y_true) - np.log1p(y_pred)
    low, high = np.quantile(residuals, [(1 - coverage) / 2, (1 + coverage) / 2])
    return {
        "coverage": coverage,
        "log_residual_low": float(low),
        "log_residual_high": float(high),
        "rows": len(residuals),
        "method": "split conformal: quantiles of log1p residuals on the held-out test split",
    }


def _log_search(result: TuningResult, outcome: SearchOutcome) -> None:
    mlflow.log_dict(outcome.to_dict(), OUTCOME_ARTIFACT)
    mlflow.log_metrics({f"valid_rmsle_{name}": score for name, score in outcome.valid_rmsle.items()})
    if outcome.blend_valid_rmsle is not None:
        mlflow.log_metric("valid_rmsle_blend", outcome.blend_valid_rmsle)
    mlflow.log_param("data.n_features", outcome.n_features)
    mlflow.log_params({f"final.weight.{n}": round(w, 4) for n, w in outcome.weights.items()})
    for name, config in outcome.configs.items():
        mlflow.log_params({f"final.{name}.{k}": v for k, v in config.items() if k != "family"})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.tuning_history(result.trials, folder / "tuning_history.png")
        pd.DataFrame([vars(t) for t in result.trials]).to_csv(folder / "trials.csv", index=False)
        mlflow.log_artifacts(str(folder), artifact_path="search")


def prepare_split(listings: pd.DataFrame, params: Params) -> Split:
    """Priced rows split by hashed id; refuses sizes too small to train and evaluate on."""
    split = split_listings(usable_for_training(listings), params.split)
    if len(split.train) < params.training.min_train_rows or len(split.valid) == 0 or len(split.test) == 0:
        raise TrainingError(
            f"not enough priced listings to train: {split.sizes()} (need >= {params.training.min_train_rows} "
            "train rows and non-empty valid/test splits)"
        )
    return split


def tune_stage(
    listings: pd.DataFrame,
    settings: Settings,
    params: Params,
    *,
    source: str = "unknown",
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> str:
    """Open the parent run, log parameters and data sizes, run the search; return the run id."""
    split = prepare_split(listings, params)
    configure_mlflow(settings)
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags({"source": source, "price_alchemy.stage": "training"})
        mlflow.log_params(params.flat())
        sizes = {**split.sizes(), "input_rows": len(listings)}
        mlflow.log_params({f"data.{k}": v for k, v in sizes.items()})
        outcome, result = search(split.train, split.valid, params, on_stage=on_stage, on_trial=on_trial)
        _log_search(result, outcome)
    return str(parent.info.run_id)


def fit_stage(
    listings: pd.DataFrame,
    settings: Settings,
    params: Params,
    run_id: str,
    *,
    on_stage: StageCallback | None = None,
) -> EvaluatedModel:
    """Fit the searched model, evaluate it and the rules baseline on test, log plots and the model."""
    stage = on_stage or (lambda message: log.info("%s", message))
    split = prepare_split(listings, params)
    configure_mlflow(settings)
    outcome = SearchOutcome.from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{OUTCOME_ARTIFACT}"))
    with mlflow.start_run(run_id=run_id):
        stage(f"fitting the final {' + '.join(outcome.weights)} model")
        model = fit_final(split.train, split.valid, params, outcome)
        stage(f"evaluating on {len(split.test):,} test rows")
        X_test = split.test[list(FEATURE_COLUMNS)]
        y_test = split.test[PRICE].to_numpy(dtype=np.float64)
        y_pred = model.predict(X_test)
        test_metrics = regression_metrics(y_test, y_pred)
        baseline_pred = MedianPriceBaseline().fit(split.train, split.train[PRICE]).predict(X_test)
        baseline_metrics = regression_metrics(y_test, baseline_pred)
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline_metrics.items()})
        _log_evaluation_plots(split, y_pred, baseline_pred)
        profile_rows = split.train.head(20_000)
        profile = reference_profile(profile_rows, model.predict(profile_rows[list(FEATURE_COLUMNS)]))
        profile["price_interval"] = price_interval(y_test, y_pred)
        mlflow.log_dict(profile, "reference/profile.json")
        stage("logging the model")
        example = X_test.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=model_requirements(),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=list(TRUSTED_TYPES),
        )
    return EvaluatedModel(run_id, info.model_uri, test_metrics, baseline_metrics)


def register_stage(settings: Settings, evaluated: EvaluatedModel) -> str:
    """Register the logged model as a new version of ``settings.model_name``; return the version."""
    configure_mlflow(settings)
    tags = {"run_id": evaluated.run_id, "test_rmsle": repr(float(evaluated.test_metrics["rmsle"]))}
    version = mlflow.register_model(evaluated.model_uri, settings.model_name, tags=tags)
    log.info("registered %s v%s from run %s", settings.model_name, version.version, evaluated.run_id)
    return str(version.version)


def promote_stage(
    listings: pd.DataFrame, settings: Settings, params: Params, version: str
) -> PromotionDecision:
    """Alias the version ``challenger`` and promote it to ``champion`` per the rule; record why."""
    split = prepare_split(listings, params)
    configure_mlflow(settings)
    client = MlflowClient()
    registered = client.get_model_version(settings.model_name, version)
    challenger_rmsle = float(registered.tags["test_rmsle"])
    decision = decide_promotion(
        client, settings.model_name, version, challenger_rmsle, split.test, params.promotion.margin
    )
    run_id = registered.tags.get("run_id") or registered.run_id
    if run_id:
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags(decision.as_tags())
            mlflow.log_text(json.dumps(asdict(decision), indent=2), "promotion.json")
    return decision


def run_training(
    listings: pd.DataFrame,
    settings: Settings,
    params: Params,
    *,
    source: str = "unknown",
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> TrainingResult:
    """All four stages in one process: train, evaluate, register and maybe promote."""
    started = time.perf_counter()
    sizes = {**prepare_split(listings, params).sizes(), "input_rows": len(listings)}
    run_id = tune_stage(listings, settings, params, source=source, on_stage=on_stage, on_trial=on_trial)
    evaluated = fit_stage(listings, settings, params, run_id, on_stage=on_stage)
    if on_stage is not None:
        on_stage("registering and deciding promotion")
    version = register_stage(settings, evaluated)
    decision = promote_stage(listings, settings, params, version)
    seconds = time.perf_counter() - started
    client = MlflowClient()
    trials = client.search_runs(
        [client.get_run(run_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("total_seconds", seconds)
    return TrainingResult(
        run_id=run_id,
        model_uri=f"models:/{settings.model_name}/{version}",
        model_version=version,
        test_metrics=evaluated.test_metrics,
        baseline_metrics=evaluated.baseline_metrics,
        decision=decision,
        n_trials=len(trials),
        sizes=sizes,
        seconds=seconds,
    )
