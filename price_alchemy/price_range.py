"""The 80% price range of a suggestion: split conformal in log space, as wide as the listing is hard.

Training calibrates a :class:`PriceInterval` on the held-out test split (which the final model
never saw) and stores it in the reference profile under ``price_interval``; the API and batch
scoring apply it to every suggestion. With enough held-out rows the residuals are first divided by
a :class:`ListingScale` (normalized split conformal), so a listing's range is as wide as the errors
of listings like it. Everything stored is numbers and category names, never code (numpy and pandas
only, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy.profile import top_category

__all__ = ["ADAPTIVE_MIN_ROWS", "INTERVAL_COVERAGE", "ListingScale", "PriceInterval"]

#: The share of held-out listings the range is calibrated to hold.
INTERVAL_COVERAGE = 0.8
#: Held-out rows below which training calibrates the constant-width range: with fewer, a fitted
#: listing scale is noise (each half of the split fits it on the other half).
ADAPTIVE_MIN_ROWS = 400
#: Added to ``|residual|`` before the log in the scale fit: a near-exact price is not infinitely easy
#: (larger floors pull every scale towards the typical one; 0.005-0.05 measured alike on the sample).
SCALE_FLOOR = 0.005
#: Ridge penalty of the scale fit (on indicator columns, so the weights stay small on few rows).
SCALE_ALPHA = 5.0
#: A top-level category gets its own scale column with at least this many calibration rows.
SCALE_MIN_CATEGORY_ROWS = 30
#: A listing's scale is kept within these factors of the typical one, whatever its segments say.
SCALE_CLIP = (0.25, 4.0)
PRICE_BIN_LEVELS = (0.2, 0.4, 0.6, 0.8)
OTHER_CATEGORY = "(other)"
CONDITIONS = (1, 2, 3, 4, 5)


#: A stored range is refused (no range) when a log-price half-width could pass this: e^10 is a
#: factor of 22,000 between a price and its range's end, beyond any real listing's uncertainty.
MAX_LOG_WIDTH = 10.0
#: Bound of a stored scale weight (fitted on indicators with a ridge penalty: far below 1 in practice).
MAX_SCALE_WEIGHT = 100.0


def _text(column: pd.Series) -> pd.Series:
    """A text column as stripped strings, missing values empty (any dtype, categorical included)."""
    column = column.astype(object)
    return column.where(column.notna(), "").astype(str).str.strip()


def _no_description(description: pd.Series) -> np.ndarray:
    text = _text(description)
    return (text.str.len().lt(5) | text.eq("No description yet")).to_numpy()


def _numbers(raw: Any) -> tuple[float, ...] | None:
    """A JSON list of finite numbers (not booleans, not a string), or None."""
    if not isinstance(raw, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw
    ):
        return None
    try:
        values = tuple(float(v) for v in raw)
    except OverflowError:  # an integer beyond float range
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _number(raw: Any) -> float | None:
    values = _numbers([raw])
    return None if values is None else values[0]


@dataclass(frozen=True)
class ListingScale:
    """How hard a listing is to price, relative to the others: the width factor of its range.

    ``exp(intercept + weights . (x - centre))``, where ``x`` marks the listing's segments: its
    predicted-price quintile (edges from the calibration rows), its top-level category, a missing
    brand, a missing description, its condition and free shipping. It is a ridge fit of
    ``log(|log1p residual| + SCALE_FLOOR)`` on held-out rows: the typical error of listings like it.
    Only numbers and category names, so a profile carrying it is data, never code.
    """

    price_edges: tuple[float, ...]
    categories: tuple[str, ...]
    centre: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float

    @staticmethod
    def design(
        listings: pd.DataFrame, log_price: np.ndarray, price_edges: Sequence[float], categories: Sequence[str]
    ) -> np.ndarray:
        """The segment indicators of each listing (rows of ``listings``, in order)."""
        price_bin = np.searchsorted(np.asarray(price_edges, dtype=np.float64), log_price)
        top = top_category(listings["category_name"]).to_numpy()
        top = np.where(np.isin(top, list(categories)), top, OTHER_CATEGORY)
        condition = pd.to_numeric(listings["item_condition_id"], errors="coerce").to_numpy()
        shipping = pd.to_numeric(listings["shipping"], errors="coerce").to_numpy()
        brand = _text(listings["brand_name"])
        columns = [price_bin == k for k in range(len(price_edges) + 1)]
        columns += [top == c for c in (*categories, OTHER_CATEGORY)]
        columns += [brand.eq("").to_numpy(), _no_description(listings["item_description"])]
        columns += [condition == c for c in CONDITIONS]
        columns.append(shipping == 1)
        return np.column_stack(columns).astype(np.float64)

    @classmethod
    def fit(
        cls, listings: pd.DataFrame, y_pred: np.ndarray, residuals: np.ndarray, alpha: float = SCALE_ALPHA
    ) -> ListingScale:
        """The ridge fit on held-out ``listings``, their predictions and log1p residuals."""
        log_price = np.log1p(np.maximum(np.asarray(y_pred, dtype=np.float64), 0.0))
        edges = tuple(float(e) for e in np.quantile(log_price, PRICE_BIN_LEVELS))
        counts = top_category(listings["category_name"]).value_counts()
        categories = tuple(
            str(c) for c, n in counts.items() if n >= SCALE_MIN_CATEGORY_ROWS and c != OTHER_CATEGORY
        )
        X = cls.design(listings, log_price, edges, categories)
        y = np.log(np.abs(residuals) + SCALE_FLOOR)
        centre = X.mean(axis=0)
        Xc = X - centre
        weights = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - y.mean()))
        return cls(edges, categories, tuple(centre.tolist()), tuple(weights.tolist()), float(y.mean()))

    def of(self, listings: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
        """The scale of each listing priced ``prices`` (rows of ``listings``, in order)."""
        log_price = np.log1p(np.maximum(np.asarray(prices, dtype=np.float64), 0.0))
        X = self.design(listings, log_price, self.price_edges, self.categories)
        relative = (X - np.asarray(self.centre)) @ np.asarray(self.weights)
        return np.exp(self.intercept + np.clip(relative, *np.log(SCALE_CLIP)))

    def to_profile(self) -> dict[str, Any]:
        return {
            "price_edges": list(self.price_edges),
            "categories": list(self.categories),
            "centre": list(self.centre),
            "weights": list(self.weights),
            "intercept": self.intercept,
        }

    @classmethod
    def from_profile(cls, raw: Any) -> ListingScale | None:
        """The scale stored in a profile, or None when it is not exactly what :meth:`fit` stores.

        Checked: lists of finite numbers (and of distinct strings for the categories), sorted
        edges, one centre (a share, within 0-1) and one weight per design column, bounded weights
        and intercept. Anything else would give ranges of another width than the trained ones.
        """
        if not isinstance(raw, dict):
            return None
        edges, centre, weights = (_numbers(raw.get(k)) for k in ("price_edges", "centre", "weights"))
        intercept = _number(raw.get("intercept"))
        categories = raw.get("categories")
        if edges is None or centre is None or weights is None or intercept is None:
            return None
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            return None
        columns = len(edges) + 1 + len(categories) + 1 + 2 + len(CONDITIONS) + 1
        if (
            len(centre) != columns
            or len(weights) != columns
            or len(set(categories)) != len(categories)
            or list(edges) != sorted(edges)
            or not all(0.0 <= c <= 1.0 for c in centre)
            or not all(abs(w) <= MAX_SCALE_WEIGHT for w in weights)
            or abs(intercept) > MAX_LOG_WIDTH
        ):
            return None
        return cls(edges, tuple(categories), centre, weights, intercept)

    @property
    def largest(self) -> float:
        """The largest scale any listing can get (the clip's top over the typical listing)."""
        return math.exp(self.intercept) * SCALE_CLIP[1]


@dataclass(frozen=True)
class PriceInterval:
    """A price range calibrated on held-out rows (split conformal, in log space).

    Computed at training time (:meth:`calibrate`) and stored in the profile under
    ``price_interval``; applied at serving time (:meth:`bounds`). With a :class:`ListingScale`
    (normalized split conformal) ``log_residual_low`` and ``log_residual_high`` are quantiles of
    residuals divided by the listing's scale, and each listing's range is as wide as its scale;
    without one, every listing gets the same relative width.
    """

    coverage: float
    log_residual_low: float
    log_residual_high: float
    method: str | None = None
    rows: int | None = None
    scale: ListingScale | None = None

    METHOD = "split conformal: quantiles of log1p residuals on the held-out test split"
    METHOD_NORMALIZED = (
        "normalized split conformal: quantiles of log1p residuals on the held-out test split, each "
        "divided by a listing scale fitted on the other half of the split"
    )

    @classmethod
    def calibrate(
        cls,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        coverage: float = INTERVAL_COVERAGE,
        listings: pd.DataFrame | None = None,
        min_rows: int = ADAPTIVE_MIN_ROWS,
    ) -> PriceInterval:
        """Quantiles ``(1 - coverage) / 2`` and ``(1 + coverage) / 2`` of ``log1p(actual) -
        log1p(predicted)`` on rows the final model never saw: about ``coverage`` of such listings
        sold inside the range they would have been given. Log space, because errors scale with price.

        Given the ``listings`` (at least ``min_rows``), the residuals are first divided by a
        :class:`ListingScale`; each half of the rows is scored with the scale fitted on the other
        half, so no conformity score comes from a scale that saw it. The stored scale is fitted on
        all rows.
        """
        y_pred = np.asarray(y_pred, dtype=np.float64)
        residuals = np.log1p(y_true) - np.log1p(y_pred)
        levels = [(1 - coverage) / 2, (1 + coverage) / 2]
        if listings is None or len(residuals) < max(min_rows, 2 * len(PRICE_BIN_LEVELS) + 2):
            low, high = np.quantile(residuals, levels)
            return cls(coverage, float(low), float(high), cls.METHOD, len(residuals))
        listings = listings.reset_index(drop=True)
        first = np.arange(len(residuals)) % 2 == 0
        scores = np.empty(len(residuals))
        for held in (first, ~first):
            scale = ListingScale.fit(listings[~held], y_pred[~held], residuals[~held])
            scores[held] = residuals[held] / scale.of(listings[held], y_pred[held])
        low, high = np.quantile(scores, levels)
        scale = ListingScale.fit(listings, y_pred, residuals)
        return cls(coverage, float(low), float(high), cls.METHOD_NORMALIZED, len(residuals), scale)

    def to_profile(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage,
            "log_residual_low": self.log_residual_low,
            "log_residual_high": self.log_residual_high,
            "rows": self.rows,
            "method": self.method,
            "scale": None if self.scale is None else self.scale.to_profile(),
        }

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> PriceInterval | None:
        """The interval in a reference profile, or None when absent or malformed (never invented)."""
        raw = profile.get("price_interval")
        if not isinstance(raw, dict):
            return None
        values = _numbers([raw.get(k) for k in ("coverage", "log_residual_low", "log_residual_high")])
        if values is None:
            return None
        coverage, low, high = values
        if not 0 < coverage < 1 or low > high:
            return None
        scale = None
        if raw.get("scale") is not None:
            scale = ListingScale.from_profile(raw["scale"])
            if scale is None:  # a damaged scale: no range rather than a range of the wrong width
                return None
        if max(abs(low), abs(high)) * (1.0 if scale is None else scale.largest) > MAX_LOG_WIDTH:
            return None  # finite but absurd: its ends could overflow to infinity
        method = raw.get("method")
        rows = raw.get("rows")
        return cls(
            coverage,
            low,
            high,
            str(method) if method is not None else None,
            int(rows) if isinstance(rows, int) else None,
            scale,
        )

    @property
    def adaptive(self) -> bool:
        """Whether each listing's range is as wide as its own scale."""
        return self.scale is not None

    def bounds(
        self, prices: np.ndarray, listings: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``expm1(log1p(p) + low * s)`` and ``expm1(log1p(p) + high * s)``, never below zero.

        ``s`` is 1 for a constant-width range, else the scale of each listing (rows of
        ``listings``, in the order of ``prices``), which is then required.
        """
        prices = np.asarray(prices, dtype=np.float64)
        base = np.log1p(np.maximum(prices, 0.0))
        width: np.ndarray | float = 1.0
        if self.scale is not None:
            if listings is None or len(listings) != len(prices):
                raise ValueError("this price range depends on the listing: pass one listing per price")
            width = self.scale.of(listings.reset_index(drop=True), prices)
        low = np.maximum(np.expm1(base + self.log_residual_low * width), 0.0)
        return low, np.expm1(base + self.log_residual_high * width)
