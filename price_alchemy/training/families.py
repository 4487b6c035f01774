"""Model families and their Hyperopt search spaces, built from the parameters file."""

from __future__ import annotations

import math
from typing import Any

from hyperopt import hp
from hyperopt.pyll import scope
from sklearn.linear_model import Ridge

from price_alchemy.estimators import CodeEncoder
from price_alchemy.features import CODE_COLUMNS, MEANING_COLUMNS, NUMERIC
from price_alchemy.params import TuningParams


def _log_uniform(label: str, bounds: tuple[float, float]) -> Any:
    low, high = bounds
    return hp.loguniform(label, math.log(low), math.log(high))


def _int_uniform(label: str, bounds: tuple[int, int], step: int = 1) -> Any:
    return scope.int(hp.quniform(label, bounds[0], bounds[1], step))


def _stack_space(label: str, params: TuningParams) -> dict[str, Any]:
    space = params.stack
    return {
        "alpha": _log_uniform(f"{label}.alpha", space.alpha),
        "n_neighbors": _int_uniform(f"{label}.n_neighbors", space.n_neighbors),
        "learning_rate": _log_uniform(f"{label}.learning_rate", space.learning_rate),
        "n_estimators": _int_uniform(f"{label}.n_estimators", space.n_estimators, 10),
        "num_leaves": _int_uniform(f"{label}.num_leaves", space.num_leaves),
        "min_child_samples": _int_uniform(f"{label}.min_child_samples", space.min_child_samples),
        "svd_components": space.svd_components,
        "n_folds": space.n_folds,
        "max_meta_rows": space.max_meta_rows,
        "knn_max_reference": space.knn_max_reference,
        "knn_max_df": space.knn_max_df,
    }


def _mlp_space(label: str, params: TuningParams) -> dict[str, Any]:
    space = params.mlp
    return {
        "hidden_units": _int_uniform(f"{label}.hidden_units", space.hidden_units, 32),
        "learning_rate": _log_uniform(f"{label}.learning_rate", space.learning_rate),
        "alpha": _log_uniform(f"{label}.alpha", space.alpha),
        "epochs": _int_uniform(f"{label}.epochs", space.epochs),
        "n_models": space.n_models,
        "batch_size": space.batch_size,
        "max_columns": space.max_columns,
    }


def search_space(params: TuningParams) -> Any:
    """One ``hp.choice`` over the enabled families, each with its own sub-space."""
    options: dict[str, dict[str, Any]] = {
        "ridge": {"family": "ridge", "alpha": _log_uniform("ridge.alpha", params.ridge.alpha)},
        "lightgbm": {
            "family": "lightgbm",
            "learning_rate": _log_uniform("lightgbm.learning_rate", params.lightgbm.learning_rate),
            "num_leaves": _int_uniform("lightgbm.num_leaves", params.lightgbm.num_leaves),
            "n_estimators": _int_uniform("lightgbm.n_estimators", params.lightgbm.n_estimators, 10),
            "min_child_samples": _int_uniform(
                "lightgbm.min_child_samples", params.lightgbm.min_child_samples
            ),
            "colsample_bytree": hp.uniform("lightgbm.colsample_bytree", *params.lightgbm.colsample_bytree),
            "max_columns": params.lightgbm.max_columns,
        },
        "stack": {"family": "stack", **_stack_space("stack", params)},
        "mlp": {"family": "mlp", **_mlp_space("mlp", params)},
        "stack_mlp": {
            "family": "stack_mlp",
            **_stack_space("stack_mlp", params),
            **{f"mlp_{k}": v for k, v in params.stack_mlp.model_dump().items() if k != "stack_weight"},
            "mlp_batch_size": params.mlp.batch_size,
            "mlp_max_columns": params.mlp.max_columns,
            "stack_weight": params.stack_mlp.stack_weight,
        },
    }
    return hp.choice("family", [options[name] for name in params.families])


def make_estimator(config: dict[str, Any], *, seed: int = 42, n_jobs: int = 2) -> Any:
    """An unfitted estimator for one sampled configuration (learns log1p(price) on sparse features).

    Every family starts from the featurizer's layout (category codes, numeric, text; see
    price_alchemy.features): ridge and lightgbm turn the codes into one-hot and out-of-fold target
    encodings with :class:`CodeEncoder`, the stack and the MLPs do so themselves. ``stack_mlp`` is
    the stack and the MLPs averaged in log space with the fixed share ``stack_weight``.
    """
    from sklearn.pipeline import Pipeline

    family = config["family"]
    codes = CodeEncoder(len(CODE_COLUMNS), seed=seed)
    if family == "ridge":
        # sag/sparse_cg are the solvers that scale to millions of sparse rows without densifying.
        ridge = Ridge(alpha=float(config["alpha"]), solver="sparse_cg", tol=1e-4, random_state=seed)
        return Pipeline([("codes", codes), ("ridge", ridge)])
    if family == "stack":
        return _stack(config, seed, n_jobs)
    if family == "mlp":
        return _mlp(config, seed)
    if family == "stack_mlp":
        from price_alchemy.estimators import WeightedBlend

        mlp = _mlp({k.removeprefix("mlp_"): v for k, v in config.items() if k.startswith("mlp_")}, seed)
        weight = float(config["stack_weight"])
        return WeightedBlend([("stack", _stack(config, seed, n_jobs)), ("mlp", mlp)], [weight, 1.0 - weight])
    if family == "lightgbm":
        from lightgbm import LGBMRegressor

        from price_alchemy.estimators import FrequentColumns

        booster = LGBMRegressor(
            learning_rate=float(config["learning_rate"]),
            num_leaves=int(config["num_leaves"]),
            n_estimators=int(config["n_estimators"]),
            min_child_samples=int(config["min_child_samples"]),
            colsample_bytree=float(config["colsample_bytree"]),
            subsample=0.8,
            subsample_freq=1,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=-1,
        )
        return Pipeline(
            [
                ("codes", codes),
                ("columns", FrequentColumns(int(config["max_columns"]))),
                ("lightgbm", booster),
            ]
        )
    raise ValueError(f"unknown model family {family!r}")


def describe(config: dict[str, Any]) -> dict[str, Any]:
    """The config as flat MLflow params (``family`` plus ``<family>.<name>``)."""
    family = config["family"]
    out: dict[str, Any] = {"family": family}
    for key, value in config.items():
        if key != "family":
            out[f"{family}.{key}"] = round(value, 6) if isinstance(value, float) else value
    return out


def _stack(config: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from price_alchemy.estimators import StackedRegressor

    return StackedRegressor(
        len(CODE_COLUMNS),
        len(NUMERIC),
        alpha=float(config["alpha"]),
        n_neighbors=int(config["n_neighbors"]),
        learning_rate=float(config["learning_rate"]),
        n_estimators=int(config["n_estimators"]),
        num_leaves=int(config["num_leaves"]),
        min_child_samples=int(config["min_child_samples"]),
        svd_components=int(config["svd_components"]),
        n_folds=int(config["n_folds"]),
        max_meta_rows=int(config["max_meta_rows"]),
        knn_max_reference=int(config["knn_max_reference"]),
        knn_max_df=float(config.get("knn_max_df", 1.0)),
        n_dense=MEANING_COLUMNS,
        seed=seed,
        n_jobs=n_jobs,
    )


def _mlp(config: dict[str, Any], seed: int) -> Any:
    from price_alchemy.mlp import SparseMLPRegressor

    return SparseMLPRegressor(
        len(CODE_COLUMNS),
        hidden_units=int(config["hidden_units"]),
        n_models=int(config["n_models"]),
        epochs=int(config["epochs"]),
        batch_size=int(config["batch_size"]),
        alpha=float(config["alpha"]),
        learning_rate=float(config["learning_rate"]),
        max_columns=int(config["max_columns"]),
        seed=seed,
    )
