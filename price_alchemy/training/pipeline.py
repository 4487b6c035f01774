"""The training job: split, featurize, tune, assemble, evaluate, log, register, promote.

One parent MLflow run holds the parameters, data sizes, test metrics (model and rules baseline),
plots and the model; each Hyperopt trial is a nested run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from price_alchemy.config import Settings
from price_alchemy.errors import TrainingError
from price_alchemy.estimators import TRUSTED_TYPES, MedianPriceBaseline, WeightedBlend
from price_alchemy.features import build_featurizer, build_pipeline
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.split import Split, split_listings
from price_alchemy.training import plots
from price_alchemy.training.evaluate import regression_metrics, rmse
from price_alchemy.training.families import make_estimator
from price_alchemy.training.registry import PromotionDecision, decide_promotion
from price_alchemy.training.tracking import configure_mlflow
from price_alchemy.training.tuning import TrialCallback, TuningResult, blend_weights, tune

log = logging.getLogger(__name__)
StageCallback = Callable[[str], None]


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


@dataclass
class FittedModel:
    """The final pipeline plus what the search found (for logging and benchmarks)."""

    pipeline: Pipeline
    tuning: TuningResult
    weights: dict[str, float]
    n_features: int


def _choose_weights(result: TuningResult, y_valid_log: np.ndarray, blend: bool) -> dict[str, float]:
    best = result.best_family
    single = {best.config["family"]: 1.0}
    if not blend or len(result.best) < 2:
        return single
    weights = blend_weights({n: b.valid_log_pred for n, b in result.best.items()}, y_valid_log)
    blended = sum(w * result.best[n].valid_log_pred for n, w in weights.items())
    score = rmse(y_valid_log, np.asarray(blended))
    if mlflow.active_run() is not None:
        mlflow.log_metric("valid_rmsle_blend", score)
    return {n: w for n, w in weights.items() if w > 0} if score < best.valid_rmsle else single


def fit_tuned_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: Params,
    *,
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> FittedModel:
    """Tune on train/valid, then fit the chosen configuration (or blend) as one Pipeline.

    The featurizer is fitted once for the search; the final pipeline is refitted from scratch on
    train (+ valid when ``training.refit_on_valid``), so nothing outside those rows leaks in.
    """
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
    weights = _choose_weights(result, y_valid_log, params.training.blend)

    fit_rows = pd.concat([train, valid], ignore_index=True) if params.training.refit_on_valid else train
    stage(f"fitting the final {' + '.join(weights)} model on {len(fit_rows):,} rows")
    members = [(n, make_estimator(result.best[n].config, seed=params.tuning.seed)) for n in weights]
    estimator: Any = members[0][1] if len(members) == 1 else WeightedBlend(members, list(weights.values()))
    pipeline = build_pipeline(build_featurizer(params.features), estimator)
    pipeline.fit(fit_rows[columns], fit_rows[PRICE].to_numpy(dtype=np.float64))
    return FittedModel(pipeline, result, weights, int(X_train.shape[1]))


def _log_plots(split: Split, y_pred: np.ndarray, baseline_pred: np.ndarray, result: TuningResult) -> None:
    y_true = split.test[PRICE].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(y_true, y_pred, folder / "predicted_vs_actual.png")
        plots.residuals_by_category(split.test, y_pred, folder / "residuals_by_category.png")
        plots.error_by_price_band(y_true, y_pred, baseline_pred, folder / "error_by_price_band.png")
        plots.tuning_history(result.trials, folder / "tuning_history.png")
        pd.DataFrame([vars(t) for t in result.trials]).to_csv(folder / "trials.csv", index=False)
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")


def reference_profile(train: pd.DataFrame, predictions: np.ndarray) -> dict[str, Any]:
    """Distributions of the training inputs and predictions, kept with the model for drift checks."""
    top = train["category_name"].fillna("(missing)").astype(str).str.split("/").str[0]

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
    }


def run_training(
    listings: pd.DataFrame,
    settings: Settings,
    params: Params,
    *,
    source: str = "unknown",
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> TrainingResult:
    """Train, evaluate, register and maybe promote a model on validated ``listings``."""
    started = time.perf_counter()
    stage = on_stage or (lambda message: log.info("%s", message))
    usable = usable_for_training(listings)
    split = split_listings(usable, params.split)
    if len(split.train) < params.training.min_train_rows or len(split.valid) == 0 or len(split.test) == 0:
        raise TrainingError(
            f"not enough priced listings to train: {split.sizes()} (need >= {params.training.min_train_rows} "
            "train rows and non-empty valid/test splits)"
        )
    configure_mlflow(settings)
    client = MlflowClient()
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags({"source": source, "price_alchemy.stage": "training"})
        mlflow.log_params(params.flat())
        sizes = {
            **split.sizes(),
            "input_rows": len(listings),
            "price_zero_or_missing": len(listings) - len(usable),
        }
        mlflow.log_params({f"data.{k}": v for k, v in sizes.items()})

        fitted = fit_tuned_model(split.train, split.valid, params, on_stage=stage, on_trial=on_trial)
        model, result = fitted.pipeline, fitted.tuning
        mlflow.log_param("data.n_features", fitted.n_features)
        mlflow.log_params({f"final.weight.{n}": round(w, 4) for n, w in fitted.weights.items()})
        for name in fitted.weights:
            config = result.best[name].config
            mlflow.log_params({f"final.{name}.{k}": v for k, v in config.items() if k != "family"})

        stage(f"evaluating on {sizes['test']:,} test rows")
        X_test = split.test[list(FEATURE_COLUMNS)]
        y_test = split.test[PRICE].to_numpy(dtype=np.float64)
        y_pred = model.predict(X_test)
        test_metrics = regression_metrics(y_test, y_pred)
        baseline = MedianPriceBaseline().fit(split.train, split.train[PRICE])
        baseline_pred = baseline.predict(X_test)
        baseline_metrics = regression_metrics(y_test, baseline_pred)
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline_metrics.items()})
        mlflow.log_metric("valid_rmsle_best_trial", result.best_family.valid_rmsle)
        _log_plots(split, y_pred, baseline_pred, result)
        profile_rows = split.train.head(20_000)
        profile = reference_profile(profile_rows, model.predict(profile_rows[list(FEATURE_COLUMNS)]))
        mlflow.log_dict(profile, "reference/profile.json")

        stage("logging and registering the model")
        example = X_test.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            registered_model_name=settings.model_name,
            pip_requirements=model_requirements(),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=list(TRUSTED_TYPES),
        )
        version = str(info.registered_model_version)
        client.set_model_version_tag(
            settings.model_name, version, "test_rmsle", f"{test_metrics['rmsle']:.6f}"
        )
        client.set_model_version_tag(settings.model_name, version, "run_id", parent.info.run_id)
        decision = decide_promotion(
            client, settings.model_name, version, test_metrics["rmsle"], split.test, params.promotion.margin
        )
        mlflow.set_tags(decision.as_tags())
        mlflow.log_text(json.dumps(asdict(decision), indent=2), "promotion.json")
        seconds = time.perf_counter() - started
        mlflow.log_metric("total_seconds", seconds)
    return TrainingResult(
        run_id=parent.info.run_id,
        model_uri=f"models:/{settings.model_name}/{version}",
        model_version=version,
        test_metrics=test_metrics,
        baseline_metrics=baseline_metrics,
        decision=decision,
        n_trials=len(result.trials),
        sizes=sizes,
        seconds=seconds,
    )
