"""Binning shared by the training reference profile and the drift monitor.

Training stores, with every model, the distribution of its inputs and predictions
(``reference/profile.json``); the drift monitor later counts served listings into the *same* bins.
Both sides must therefore bin a value identically, which is what this module is for (numpy only,
no I/O). Numeric features use fixed edges taken from the training deciles, so every reference bin
holds about a tenth of the training rows, the condition under which the Population Stability Index
is well behaved (no near-empty reference bin dominates it).

Bin rule: ``k`` sorted edges make ``k + 1`` bins ``(-inf, e0), [e0, e1), ..., [e_{k-1}, +inf)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

MISSING = "(missing)"
#: Quantile levels whose (distinct) values become the bin edges of a numeric feature.
EDGE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def top_category(category_name: pd.Series) -> pd.Series:
    """First level of the category path, ``(missing)`` when absent (as in the request events)."""
    top = category_name.fillna(MISSING).astype(str).str.split("/").str[0]
    return top.where(top.str.len() > 0, MISSING)


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
