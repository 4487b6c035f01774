"""What travels with a model: the listing signals and the training profile.

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
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy.names import MISSING

__all__ = [
    "MISSING",
    "SIGNAL_COLUMNS",
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
