"""Estimators that travel inside the saved model (so serving needs this module, not training code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

# Types a saved Price Alchemy model may contain beyond skops' built-in sklearn/numpy/scipy allow-list.
# The model is saved in MLflow's skops format with exactly this list; anything else fails at save time.
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "price_alchemy.estimators.FrequentColumns",
    "price_alchemy.estimators.LogPriceRegressor",
    "price_alchemy.estimators.WeightedBlend",
    "price_alchemy.features.clean_listings",
)


class LogPriceRegressor(RegressorMixin, BaseEstimator):
    """Fits ``estimator`` on log1p(price) and predicts dollars (never below zero).

    Training on the log target is what makes squared error equal to the RMSLE we report, and it
    tames the long price tail.
    """

    def __init__(self, estimator: Any):
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> LogPriceRegressor:
        self.estimator_ = clone(self.estimator).fit(X, np.log1p(np.asarray(y, dtype=np.float64)))
        return self

    def predict_log(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.clip(np.asarray(self.estimator_.predict(X), dtype=np.float64), 0.0, None)

    def predict(self, X: Any) -> np.ndarray:
        return np.expm1(self.predict_log(X))


class FrequentColumns(TransformerMixin, BaseEstimator):
    """Keeps the ``max_columns`` sparse columns with the most non-zeros in training.

    Tree learners pay per column on every split search; rare n-grams rarely split anyway, so
    dropping them makes LightGBM several times faster on TF-IDF features at little cost.
    """

    def __init__(self, max_columns: int = 20_000):
        self.max_columns = max_columns

    def fit(self, X: Any, y: Any = None) -> FrequentColumns:
        counts = np.asarray((X != 0).sum(axis=0)).ravel()
        keep = np.argsort(-counts, kind="stable")[: self.max_columns]
        self.columns_ = np.sort(keep)
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "columns_")
        return X[:, self.columns_]


class WeightedBlend(RegressorMixin, BaseEstimator):
    """Weighted average of regressors' predictions (weights chosen on validation data)."""

    def __init__(self, estimators: Sequence[tuple[str, Any]], weights: Sequence[float]):
        self.estimators = estimators
        self.weights = weights

    def fit(self, X: Any, y: Any) -> WeightedBlend:
        if len(self.estimators) != len(self.weights):
            raise ValueError("WeightedBlend needs one weight per estimator")
        self.estimators_ = [clone(est).fit(X, y) for _, est in self.estimators]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        weights = np.asarray(self.weights, dtype=np.float64)
        stacked = np.column_stack([np.asarray(est.predict(X), dtype=np.float64) for est in self.estimators_])
        return stacked @ (weights / weights.sum())


class MedianPriceBaseline(RegressorMixin, BaseEstimator):
    """The rules baseline: median price of the most specific group with enough listings.

    Groups, most specific first: (category, brand, condition), (category, brand), (category),
    then the global median. Works on raw listing frames, in dollars.
    """

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("category_name", "brand_name", "item_condition_id"),
        ("category_name", "brand_name"),
        ("category_name",),
    )

    def __init__(self, min_count: int = 3):
        self.min_count = min_count

    @staticmethod
    def _keys(X: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
        parts = [X[c].astype("object").where(X[c].notna(), "<missing>").astype(str) for c in columns]
        key = parts[0]
        for part in parts[1:]:
            key = key + "\x1f" + part
        return key

    def fit(self, X: pd.DataFrame, y: Any) -> MedianPriceBaseline:
        prices = pd.Series(np.asarray(y, dtype=np.float64), index=X.index)
        self.global_median_ = float(prices.median())
        self.tables_: list[dict[str, float]] = []
        for columns in self.LEVELS:
            grouped = prices.groupby(self._keys(X, columns))
            stats = grouped.agg(["median", "size"])
            self.tables_.append(stats.loc[stats["size"] >= self.min_count, "median"].to_dict())
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        out = pd.Series(np.nan, index=X.index)
        for columns, table in zip(self.LEVELS, self.tables_, strict=True):
            todo = out.isna()
            if not todo.any():
                break
            out[todo] = self._keys(X.loc[todo], columns).map(table)
        return out.fillna(self.global_median_).to_numpy(dtype=np.float64)
