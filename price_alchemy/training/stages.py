"""The training run as four stages sharing one parent MLflow run.

``tune_stage`` (search, nested trial runs) -> ``fit_stage`` (final fit, test metrics against the
rules baseline, plots, training profile with the price interval, logged model) ->
``register_stage`` (registered version) -> ``promote_stage`` (challenger/champion decision).

:func:`run_training` chains them in one process: the split is computed once and the search
outcome passed on in memory. An orchestrator may run each stage as its own task instead
(:mod:`price_alchemy.tasks`): each task splits the same listings deterministically, and
``fit_stage`` then reads the outcome that ``tune_stage`` logged to the run. Callers point MLflow at
the store first (:func:`price_alchemy.mlflow_store.configure`), once per process.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.errors import ModelRefusedError, TrainingError
from price_alchemy.estimators import MedianPriceBaseline
from price_alchemy.names import (
    CHALLENGER,
    CHAMPION,
    PROFILE_ARTIFACT,
    REFERENCE_LISTINGS,
    RUN_ID_TAG,
    SEARCH_OUTCOME_ARTIFACT,
    TEST_RMSLE_TAG,
)
from price_alchemy.params import Params
from price_alchemy.price_range import PriceInterval
from price_alchemy.profile import PROFILE_ROWS, reference_profile
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.similar import reference_listings
from price_alchemy.split import Split, split_listings
from price_alchemy.training import plots
from price_alchemy.training.evaluate import (
    RANGE_SEGMENT_MIN_ROWS,
    range_by_segment,
    regression_metrics,
    rmsle,
)
from price_alchemy.training.promotion import PromotionDecision, promotion_rule
from price_alchemy.training.search import (
    FittedModel,
    SearchOutcome,
    StageCallback,
    fit_final,
    fit_tuned_model,
    search,
)
from price_alchemy.training.tuning import TrialCallback, TuningResult

log = logging.getLogger(__name__)

#: Run tag holding where the run's listings came from (the ``source`` of its datasets too).
SOURCE_TAG = "source"

__all__ = [
    "EvaluatedModel",
    "FittedModel",
    "TrainingResult",
    "fit_stage",
    "fit_tuned_model",
    "prepare_split",
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


def usable_for_training(listings: pd.DataFrame) -> pd.DataFrame:
    """Rows with a positive price: price-0 listings are not sales signal (Kaggle's own advice)."""
    price = pd.to_numeric(listings[PRICE], errors="coerce")
    return listings[price > 0].reset_index(drop=True)


def prepare_split(listings: pd.DataFrame, params: Params) -> Split:
    """Priced rows split by hashed id; refuses sizes too small to train and evaluate on."""
    split = split_listings(usable_for_training(listings), params.split)
    if len(split.train) < params.training.min_train_rows or len(split.valid) == 0 or len(split.test) == 0:
        raise TrainingError(
            f"not enough priced listings to train: {split.sizes()} (need >= {params.training.min_train_rows} "
            "train rows and non-empty valid/test splits)"
        )
    return split


def _log_search(result: TuningResult, outcome: SearchOutcome) -> None:
    mlflow_store.log_dict(outcome.to_dict(), SEARCH_OUTCOME_ARTIFACT)
    mlflow_store.log_metrics({f"valid_rmsle_{name}": score for name, score in outcome.valid_rmsle.items()})
    if outcome.blend_valid_rmsle is not None:
        mlflow_store.log_metric("valid_rmsle_blend", outcome.blend_valid_rmsle)
    mlflow_store.log_param("data.n_features", outcome.n_features)
    mlflow_store.log_params({f"final.weight.{n}": round(w, 4) for n, w in outcome.weights.items()})
    for name, config in outcome.configs.items():
        mlflow_store.log_params({f"final.{name}.{k}": v for k, v in config.items() if k != "family"})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.tuning_history(result.trials, folder / "tuning_history.png")
        pd.DataFrame([vars(t) for t in result.trials]).to_csv(folder / "trials.csv", index=False)
        mlflow_store.log_folder(folder, "search")


def _log_evaluation_plots(test: pd.DataFrame, y_pred: np.ndarray, baseline_pred: np.ndarray) -> None:
    y_true = test[PRICE].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(y_true, y_pred, folder / "predicted_vs_actual.png")
        plots.residuals_by_category(test, y_pred, folder / "residuals_by_category.png")
        plots.error_by_price_band(y_true, y_pred, baseline_pred, folder / "error_by_price_band.png")
        mlflow_store.log_folder(folder, "evaluation")


def _log_range_evaluation(
    test: pd.DataFrame, y_test: np.ndarray, y_pred: np.ndarray, interval: PriceInterval
) -> None:
    """Coverage and width of the constant and adaptive ranges per segment: a table, a plot, metrics."""
    if len(test) < 2 * RANGE_SEGMENT_MIN_ROWS:
        return
    table = range_by_segment(test, y_test, y_pred)
    overall = table.iloc[0]
    mlflow_store.log_metrics(
        {
            f"test_range_{kind}_{method}": float(overall[f"{kind}_{method}"])
            for kind in ("coverage", "ratio")
            for method in ("constant", "adaptive")
        }
    )
    mlflow_store.log_text(table.to_csv(index=False), "evaluation/price_range_by_segment.csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.range_by_segment(table, interval.coverage, Path(tmp) / "price_range_by_segment.png")
        mlflow_store.log_file(path, "evaluation")


def tune_stage(
    split: Split,
    settings: Settings,
    params: Params,
    *,
    source: str = "unknown",
    input_rows: int | None = None,
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> tuple[str, SearchOutcome]:
    """Open the parent run, log parameters and data sizes, run the search; the run id and outcome."""
    with mlflow_store.run(run_name="train") as run_id:
        mlflow_store.set_tags({SOURCE_TAG: source, "price_alchemy.stage": "training"})
        mlflow_store.log_params(params.flat())
        sizes = {**split.sizes(), "input_rows": len(split.train) if input_rows is None else input_rows}
        mlflow_store.log_params({f"data.{k}": v for k, v in sizes.items()})
        mlflow_store.log_datasets({"training": split.train, "validation": split.valid}, source)
        outcome, result = search(split.train, split.valid, params, on_stage=on_stage, on_trial=on_trial)
        _log_search(result, outcome)
    return run_id, outcome


def fit_stage(
    split: Split,
    settings: Settings,
    params: Params,
    run_id: str,
    *,
    outcome: SearchOutcome | None = None,
    source: str | None = None,
    on_stage: StageCallback | None = None,
) -> EvaluatedModel:
    """Fit the searched model, evaluate it and the rules baseline on test, log plots and the model.

    ``outcome`` is the search's result when the tune stage ran in this process; otherwise it is read
    from the run, where ``tune_stage`` logged it. The three parts are logged as the run's datasets
    (the same rows as ``tune_stage``'s change nothing) with ``source``, by default the run's own;
    the test metrics are logged once the model is, linked to it and to the test dataset.
    """
    stage = on_stage or (lambda message: log.info("%s", message))
    if outcome is None:
        outcome = SearchOutcome.from_dict(
            mlflow_store.load_run_dict(settings, run_id, SEARCH_OUTCOME_ARTIFACT)
        )
    if source is None:
        source = mlflow_store.run_tags(settings, run_id).get(SOURCE_TAG, "unknown")
    with mlflow_store.run(run_id=run_id):
        parts = {"training": split.train, "validation": split.valid, "test": split.test}
        datasets = mlflow_store.log_datasets(parts, source)
        stage(f"fitting the final {' + '.join(outcome.weights)} model")
        model = fit_final(split.train, split.valid, params, outcome)
        stage(f"evaluating on {len(split.test):,} test rows")
        X_test = split.test[list(FEATURE_COLUMNS)]
        y_test = split.test[PRICE].to_numpy(dtype=np.float64)
        y_pred = model.predict(X_test)
        test_metrics = regression_metrics(y_test, y_pred)
        baseline_pred = MedianPriceBaseline().fit(split.train, split.train[PRICE]).predict(X_test)
        baseline_metrics = regression_metrics(y_test, baseline_pred)
        mlflow_store.log_metrics({f"baseline_test_{k}": v for k, v in baseline_metrics.items()})
        _log_evaluation_plots(split.test, y_pred, baseline_pred)
        profile_rows = split.train.head(PROFILE_ROWS)
        profile = reference_profile(profile_rows, model.predict(profile_rows[list(FEATURE_COLUMNS)]))
        interval = PriceInterval.calibrate(
            y_test, y_pred, listings=split.test, min_rows=params.training.adaptive_range_min_rows
        )
        profile["price_interval"] = interval.to_profile()
        _log_range_evaluation(split.test, y_test, y_pred, interval)
        # The rows fit_final fitted on, in its order (checked against the model's kNN targets).
        fit_rows = (
            pd.concat([split.train, split.valid], ignore_index=True)
            if params.training.refit_on_valid
            else split.train
        )
        profile[REFERENCE_LISTINGS] = reference_listings(model, fit_rows)
        mlflow_store.log_dict(profile, PROFILE_ARTIFACT)
        stage("logging the model")
        model_uri = mlflow_store.log_model(model, X_test.head(5))
        # The run's test metrics, logged linked to the model and the test dataset (lineage).
        mlflow_store.log_model_metrics(
            model_uri, {f"test_{k}": v for k, v in test_metrics.items()}, datasets["test"]
        )
    return EvaluatedModel(run_id, model_uri, test_metrics, baseline_metrics)


def register_stage(settings: Settings, evaluated: EvaluatedModel) -> str:
    """Register the logged model as a new version of ``settings.model_name``; return the version."""
    tags = {RUN_ID_TAG: evaluated.run_id, TEST_RMSLE_TAG: repr(float(evaluated.test_metrics["rmsle"]))}
    tags |= mlflow_store.dataset_tags(settings, evaluated.run_id)  # the datasets it was trained/tested on
    version = mlflow_store.register_model(settings, evaluated.model_uri, tags, run_id=evaluated.run_id)
    log.info("registered %s v%s from run %s", settings.model_name, version, evaluated.run_id)
    return version


def promote_stage(split: Split, settings: Settings, params: Params, version: str) -> PromotionDecision:
    """Alias the version ``challenger``, score the champion on the same test rows, apply the rule.

    Serialized across processes by the registry's promotion lease: the champion is read, scored
    and replaced by one promotion at a time, so two concurrent runs cannot both beat the old
    champion and leave the worse one crowned. The decision, its reason and both scores are
    recorded on the version and its run.
    """
    registered = mlflow_store.version_info(settings, version)
    challenger_rmsle = float(registered.tags[TEST_RMSLE_TAG])
    mlflow_store.set_alias(settings, CHALLENGER, version)
    with mlflow_store.promotion_lock(settings) as still_held:
        decision = _decide(split, settings, params, version, challenger_rmsle)
        still_held()
        mlflow_store.record_promotion(
            settings,
            version,
            promoted=decision.promoted,
            tags=decision.as_tags(),
            description=decision.description,
            record=asdict(decision),
        )
    log.info(
        "model %s v%s %s: %s",
        settings.model_name,
        version,
        "promoted" if decision.promoted else "not promoted",
        decision.reason,
    )
    return decision


def _decide(
    split: Split, settings: Settings, params: Params, version: str, challenger_rmsle: float
) -> PromotionDecision:
    """Score the current champion on ``split.test`` (loaded safely) and apply the rule."""
    current = mlflow_store.alias_version(settings, CHAMPION)
    champion_rmsle: float | None = None
    error: str | None = None
    refused = False
    if current is not None and current.version != version:
        try:
            champion = mlflow_store.load_version(settings, current)
            champion_pred = champion.predict(split.test[list(FEATURE_COLUMNS)])
            champion_rmsle = rmsle(split.test[PRICE].to_numpy(), champion_pred)
        except ModelRefusedError as exc:  # never deserialized: it cannot be served either
            error, refused = str(exc), True
            log.error("champion %s refused: %s", current.label, exc)
        except Exception as exc:  # a champion we cannot score is not beaten by default: keep it, say why
            error = f"{type(exc).__name__}: {exc}"
    margin = params.promotion.margin
    champion_version = None if current is None else current.version
    promoted, reason = promotion_rule(
        challenger_rmsle,
        margin,
        version=version,
        champion_version=champion_version,
        champion_rmsle=champion_rmsle,
        champion_error=error,
        champion_refused=refused,
    )
    return PromotionDecision(
        settings.model_name,
        version,
        promoted,
        reason,
        challenger_rmsle,
        champion_version,
        champion_rmsle,
        margin,
    )


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
    split = prepare_split(listings, params)  # refuses too few rows before any MLflow state exists
    mlflow_store.configure(settings)
    run_id, outcome = tune_stage(
        split, settings, params, source=source, input_rows=len(listings), on_stage=on_stage, on_trial=on_trial
    )
    evaluated = fit_stage(split, settings, params, run_id, outcome=outcome, source=source, on_stage=on_stage)
    if on_stage is not None:
        on_stage("registering and deciding promotion")
    version = register_stage(settings, evaluated)
    decision = promote_stage(split, settings, params, version)
    seconds = time.perf_counter() - started
    with mlflow_store.run(run_id=run_id):
        mlflow_store.log_metric("total_seconds", seconds)
    return TrainingResult(
        run_id=run_id,
        model_uri=mlflow_store.version_uri(settings.model_name, version),
        model_version=version,
        test_metrics=evaluated.test_metrics,
        baseline_metrics=evaluated.baseline_metrics,
        decision=decision,
        n_trials=outcome.n_trials,
        sizes={**split.sizes(), "input_rows": len(listings)},
        seconds=seconds,
    )
