"""Experiment parameters: a versioned YAML file loaded into pydantic models and logged with each run."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from price_alchemy.errors import ConfigError

Family = Literal["ridge", "lightgbm", "stack", "mlp", "stack_mlp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(_Strict):
    valid_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    salt: str = "price-alchemy-v1"


class ValidationParams(_Strict):
    max_bad_fraction: float = Field(0.05, ge=0, le=1)
    max_price: float = Field(10_000.0, gt=0)
    min_rows: int = Field(1, ge=1)
    max_missing: dict[str, float] = Field(
        default_factory=lambda: {"brand_name": 0.8, "category_name": 0.2, "item_description": 0.2}
    )
    price_median_range: tuple[float, float] = (5.0, 100.0)
    price_mean_range: tuple[float, float] = (5.0, 200.0)
    max_zero_price_fraction: float = Field(0.05, ge=0, le=1)


class FeatureParams(_Strict):
    name_max_features: int = Field(50_000, ge=10)
    name_ngram_max: int = Field(2, ge=1, le=3)
    text_max_features: int = Field(100_000, ge=10)
    text_ngram_max: int = Field(2, ge=1, le=3)
    text_min_df: int = Field(2, ge=1)
    char_max_features: int = Field(30_000, ge=0)
    # Block scales: with one Ridge penalty for all columns, a block's scale sets how freely it is used.
    name_weight: float = Field(1.0, gt=0)
    char_weight: float = Field(0.5, ge=0)
    text_weight: float = Field(2.0, gt=0)
    # Pretrained word-piece vectors of the title and the description (0: off, the blocks stay empty).
    meaning_weight: float = Field(1.0, ge=0)
    # ... off when fitted on more rows than this (their memory: 2 x 128 dense columns per listing).
    meaning_max_rows: int = Field(500_000, ge=0)


class TrainingParams(_Strict):
    min_train_rows: int = Field(50, ge=10)
    tune_max_rows: int = Field(200_000, ge=100)
    blend: bool = True
    refit_on_valid: bool = True
    # The range fits the listing (normalized split conformal) when the test split has this many rows.
    adaptive_range_min_rows: int = Field(400, ge=0)


class RidgeSpace(_Strict):
    alpha: tuple[float, float] = (0.5, 30.0)


class LightGBMSpace(_Strict):
    learning_rate: tuple[float, float] = (0.03, 0.3)
    num_leaves: tuple[int, int] = (8, 64)
    n_estimators: tuple[int, int] = (100, 600)
    min_child_samples: tuple[int, int] = (10, 60)
    colsample_bytree: tuple[float, float] = (0.2, 0.9)
    max_columns: int = Field(8_000, ge=100)


class StackSpace(_Strict):
    """Search space and fixed sizes of the stacked family (see estimators.StackedRegressor)."""

    alpha: tuple[float, float] = (3.0, 12.0)
    n_neighbors: tuple[int, int] = (5, 30)
    learning_rate: tuple[float, float] = (0.01, 0.05)
    n_estimators: tuple[int, int] = (200, 600)
    num_leaves: tuple[int, int] = (4, 16)
    min_child_samples: tuple[int, int] = (20, 60)
    svd_components: int = Field(30, ge=0)
    n_folds: int = Field(5, ge=2)
    max_meta_rows: int = Field(50_000, ge=100)
    knn_max_reference: int = Field(10_000, ge=10)
    knn_max_df: float = Field(0.02, gt=0.0, le=1.0)  # share of references; 1.0 searches every column


class MLPSpace(_Strict):
    """Search space and fixed sizes of the MLP family (see mlp.SparseMLPRegressor)."""

    hidden_units: tuple[int, int] = (64, 256)
    learning_rate: tuple[float, float] = (0.002, 0.01)
    alpha: tuple[float, float] = (1e-6, 1e-4)
    epochs: tuple[int, int] = (2, 4)
    n_models: int = Field(4, ge=1)
    batch_size: int = Field(64, ge=1)
    max_columns: int = Field(50_000, ge=100)


class StackMLPSpace(_Strict):
    """stack_mlp: the stack (its space is ``tuning.stack``) averaged with MLPs of fixed sizes.

    The MLPs are not tuned: on a small validation split a search over them picks noise, and each
    trial would refit them. ``batch_size`` and ``max_columns`` come from ``tuning.mlp``.
    """

    stack_weight: float = Field(0.5, ge=0, le=1)  # the stack's share; the MLPs get the rest
    hidden_units: int = Field(128, ge=1)
    learning_rate: float = Field(0.003, gt=0)
    alpha: float = Field(1e-5, ge=0)
    epochs: int = Field(3, ge=1)
    n_models: int = Field(2, ge=1)


Backend = Literal["local", "spark"]


def _cores() -> int:
    return os.cpu_count() or 1


class TuningParams(_Strict):
    max_evals: int = Field(24, ge=1)
    timeout_s: float = Field(150.0, gt=0)
    seed: int = 42
    # Where trials run: "local" (this process, one after another) or "spark" (Hyperopt's SparkTrials,
    # one Spark task per trial, on the Spark master the environment configures; docs/spark-tuning.md).
    backend: Backend = "local"
    # Trials running at once on Spark (None: this machine's cores); also the slots of the default
    # local[N] master when no master is configured.
    spark_parallelism: int | None = Field(None, ge=1, le=128)
    families: tuple[Family, ...] = ("stack",)
    ridge: RidgeSpace = RidgeSpace()
    lightgbm: LightGBMSpace = LightGBMSpace()
    stack: StackSpace = StackSpace()
    mlp: MLPSpace = MLPSpace()
    stack_mlp: StackMLPSpace = StackMLPSpace()

    @model_validator(mode="after")
    def _families_not_empty(self) -> TuningParams:
        if not self.families:
            raise ValueError("tuning.families must name at least one model family")
        return self

    @property
    def parallelism(self) -> int:
        """Trials at once on Spark: ``spark_parallelism``, else this machine's cores."""
        return self.spark_parallelism or _cores()


class PromotionParams(_Strict):
    margin: float = Field(0.002, ge=0)


class DriftThreshold(_Strict):
    """PSI levels of one feature: ``watch`` flags a moderate shift, ``drift`` a significant one."""

    watch: float = Field(0.1, gt=0)
    drift: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> DriftThreshold:
        if self.watch > self.drift:
            raise ValueError("a watch threshold must not exceed its drift threshold")
        return self


class MonitoringParams(_Strict):
    """Drift monitoring of served requests against the champion's training profile."""

    window_hours: float = Field(24.0, gt=0)
    min_listings: int = Field(500, ge=1)
    psi: DriftThreshold = DriftThreshold()
    # Per-feature overrides of ``psi`` (feature names as in ``price_alchemy.monitoring.drift.FEATURES``).
    feature_thresholds: dict[str, DriftThreshold] = Field(default_factory=dict)
    top_k_brands: int = Field(20, ge=1)
    epsilon: float = Field(1e-4, gt=0, lt=0.01)
    max_listings: int = Field(200_000, ge=100)
    trigger_retraining: bool = True


class Params(_Strict):
    version: int = 1
    split: SplitParams = SplitParams()
    validation: ValidationParams = ValidationParams()
    features: FeatureParams = FeatureParams()
    training: TrainingParams = TrainingParams()
    tuning: TuningParams = TuningParams()
    promotion: PromotionParams = PromotionParams()
    monitoring: MonitoringParams = MonitoringParams()

    def flat(self) -> dict[str, Any]:
        """Dotted-key view for ``mlflow.log_params``."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), sub)
            else:
                out[prefix] = value

        walk("", self.model_dump(mode="json"))
        return out

    def with_budget(self, max_evals: int | None = None, timeout: float | None = None) -> Params:
        """These parameters with the tuning budget overridden where given (a CLI flag, a DAG param)."""
        update = {k: v for k, v in {"max_evals": max_evals, "timeout_s": timeout}.items() if v is not None}
        return self.model_copy(update={"tuning": self.tuning.model_copy(update=update)}) if update else self


def load_params(path: Path | str | None = None) -> Params:
    """Load the parameters file (the packaged default when ``path`` is None)."""
    try:
        if path is None:
            text = resources.files("price_alchemy").joinpath("params.yaml").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read parameters file {path}: {exc}") from exc
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"parameters file {path or 'params.yaml'} must hold a mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid parameters file {path or 'params.yaml'}:\n{exc}") from exc
