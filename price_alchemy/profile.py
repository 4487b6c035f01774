"""What travels with a model: the listing signals, the training profile, the price interval.

Training stores, with every model, a profile (``names.PROFILE_ARTIFACT``): the distribution of the
listing signals and predictions it was trained on, and the price interval calibrated on held-out
rows. The API applies the interval to every suggestion and writes the same signals into each
request event; the drift monitor counts those signals into the profile's bins. All sides derive a
signal with :func:`listing_signals` and bin it with :func:`bin_counts`, so they cannot disagree
(numpy and pandas only, no I/O).

Numeric features use fixed edges taken from the training deciles, so every reference bin holds
about a tenth of the training rows, the condition under which the Population Stability Index is
well behaved (no near-empty reference bin dominates it). Bin rule: ``k`` sorted edges make
``k + 1`` bins ``(-inf, e0), [e0, e1), ..., [e_{k-1}, +inf)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy.names import MISSING

__all__ = [
    "MISSING",
    "SIGNAL_COLUMNS",
    "ListingScale",
    "PriceInterval",
    "bin_counts",
    "bin_labels",
    "histogram",
    "listing_signals",
    "quantile_edges",
    "reference_profile",
    "signals_frame",
    "top_category",
]

#: Categorical values are cut to these lengths in signals (and so in request events).
BRAND_CUT, CATEGORY_CUT = 100, 255
#: The signals derived from one listing, in the order of :func:`listing_signals`.
SIGNAL_COLUMNS = (
    "item_condition_id",
    "shipping",
    "top_category",
    "brand_name",
    "name_length",
    "description_length",
)
#: Rows of the training split a profile is computed on (enough for deciles and top-20 shares).
PROFILE_ROWS = 20_000
INTERVAL_COVERAGE = 0.8


def _text(value: Any) -> str:
    """A text field as a string: None, NaN and pandas' NA are the empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def listing_signals(listing: Mapping[str, Any]) -> dict[str, Any]:
    """The signals of one listing that request events, drift checks, plots and profiles share.

    Condition and shipping as given; the first level of the category path and the brand (cut to
    their limits), ``(missing)`` when absent or empty; the name and description lengths.
    """
    category = _text(listing.get("category_name")).split("/", 1)[0]
    brand = _text(listing.get("brand_name"))[:BRAND_CUT]
    return {
        "item_condition_id": listing.get("item_condition_id"),
        "shipping": listing.get("shipping"),
        "top_category": category[:CATEGORY_CUT] or MISSING,
        "brand_name": brand or MISSING,
        "name_length": len(_text(listing.get("name"))),
        "description_length": len(_text(listing.get("item_description"))),
    }


def signals_frame(listings: pd.DataFrame) -> pd.DataFrame:
    """:func:`listing_signals` of every row of a listings frame (same index)."""
    records = listings.to_dict("records")
    return pd.DataFrame([listing_signals(r) for r in records], index=listings.index, columns=SIGNAL_COLUMNS)


def top_category(category_name: pd.Series) -> pd.Series:
    """The ``top_category`` signal of a column of category paths."""
    return pd.Series(
        [listing_signals({"category_name": c})["top_category"] for c in category_name],
        index=category_name.index,
        dtype=object,
    )


#: Quantile levels whose (distinct) values become the bin edges of a numeric feature.
EDGE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def quantile_edges(
    values: Sequence[float] | np.ndarray, levels: Sequence[float] = EDGE_LEVELS
) -> list[float]:
    """Distinct quantiles of ``values`` at ``levels``: the fixed bin edges stored in the profile."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return []
    return sorted({float(q) for q in np.quantile(array, levels)})


def bin_counts(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in the ``len(edges) + 1`` bins of the module's bin rule (NaN ignored)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), array, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def histogram(values: Sequence[float] | np.ndarray, edges: Sequence[float] | None = None) -> dict[str, Any]:
    """``{"edges": [...], "shares": [...]}`` of ``values``; edges from its deciles unless given."""
    edges = quantile_edges(values) if edges is None else list(edges)
    counts = bin_counts(values, edges)
    total = counts.sum()
    shares = (counts / total).tolist() if total else [0.0] * len(counts)
    return {"edges": [float(e) for e in edges], "shares": [float(s) for s in shares]}


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable labels of the bins (``<3``, ``3-7``, ``>=42``) for reports and dashboards."""
    if not edges:
        return ["all"]

    def fmt(x: float) -> str:
        return f"{x:.0f}" if abs(x) >= 10 or float(x).is_integer() else f"{x:.2f}"

    labels = [f"<{fmt(edges[0])}"]
    labels += [f"{fmt(lo)}-{fmt(hi)}" for lo, hi in pairwise(edges)]
    labels.append(f">={fmt(edges[-1])}")
    return labels


def reference_profile(train: pd.DataFrame, predictions: np.ndarray) -> dict[str, Any]:
    """Distributions of the training signals and predictions, kept with the model for drift checks."""
    signals = signals_frame(train)

    def shares(series: pd.Series, limit: int = 20) -> dict[str, float]:
        return {str(k): float(v) for k, v in series.value_counts(normalize=True).head(limit).items()}

    name_length = signals["name_length"].to_numpy(dtype=np.float64)
    description_length = signals["description_length"].to_numpy(dtype=np.float64)
    return {
        "rows": len(train),
        "item_condition_id": shares(signals["item_condition_id"]),
        "shipping": shares(signals["shipping"]),
        "top_category": shares(signals["top_category"]),
        "brand_name": shares(signals["brand_name"]),
        "name_length_quantiles": np.quantile(name_length, [0.1, 0.5, 0.9]).tolist(),
        "description_length_quantiles": np.quantile(description_length, [0.1, 0.5, 0.9]).tolist(),
        "prediction_quantiles": np.quantile(predictions, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist(),
        # Fixed bins (training deciles) and their shares: the drift monitor counts served listings
        # into these same bins to compute the Population Stability Index per feature.
        "histograms": {
            "name_length": histogram(name_length),
            "description_length": histogram(description_length),
            "prediction": histogram(np.asarray(predictions, dtype=np.float64)),
        },
    }


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


def _no_description(description: pd.Series) -> np.ndarray:
    text = description.fillna("").astype(str).str.strip()
    return (text.str.len().lt(5) | text.eq("No description yet")).to_numpy()


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
        brand = listings["brand_name"].fillna("").astype(str).str.strip()
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
        """The scale stored in a profile, or None when malformed (checked: sizes, finite numbers)."""
        if not isinstance(raw, dict):
            return None
        try:
            edges = tuple(float(e) for e in raw["price_edges"])
            categories = tuple(str(c) for c in raw["categories"])
            centre = tuple(float(c) for c in raw["centre"])
            weights = tuple(float(w) for w in raw["weights"])
            intercept = float(raw["intercept"])
        except (KeyError, TypeError, ValueError):
            return None
        columns = len(edges) + 1 + len(categories) + 1 + 2 + len(CONDITIONS) + 1
        numbers = (*edges, *centre, *weights, intercept)
        if len(centre) != columns or len(weights) != columns or not all(math.isfinite(v) for v in numbers):
            return None
        return cls(edges, categories, centre, weights, intercept)


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
        try:
            values = [float(raw[k]) for k in ("coverage", "log_residual_low", "log_residual_high")]
        except (KeyError, TypeError, ValueError):
            return None
        coverage, low, high = values
        if not all(math.isfinite(v) for v in values) or not 0 < coverage < 1 or low > high:
            return None
        scale = None
        if raw.get("scale") is not None:
            scale = ListingScale.from_profile(raw["scale"])
            if scale is None:  # a damaged scale: no range rather than a range of the wrong width
                return None
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
