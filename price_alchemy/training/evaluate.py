"""Regression metrics, in dollars, with RMSLE as the headline."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score

from price_alchemy.price_range import PriceInterval
from price_alchemy.profile import top_category


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared log error (the Mercari competition metric); predictions clipped at 0."""
    return rmse(np.log1p(np.asarray(y_true, dtype=np.float64)), np.log1p(np.clip(y_pred, 0.0, None)))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSLE, RMSE, MAE (dollars) and R2 (on dollars)."""
    return {
        "rmsle": rmsle(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


PRICE_BANDS = (0, 10, 20, 50, 100, 250, np.inf)


def error_by_band(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """RMSLE and count per true-price band (where does the model struggle?)."""
    frame = pd.DataFrame({"true": y_true, "pred": y_pred})
    labels = [f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+" for lo, hi in pairwise(PRICE_BANDS)]
    frame["band"] = pd.cut(frame["true"], bins=list(PRICE_BANDS), labels=labels, right=False)
    rows = [
        {"band": band, "count": len(part), "rmsle": rmsle(part["true"].to_numpy(), part["pred"].to_numpy())}
        for band, part in frame.groupby("band", observed=True)
    ]
    return pd.DataFrame(rows, columns=["band", "count", "rmsle"])


#: A top-level category gets its own row in the range table with at least this many test rows.
RANGE_SEGMENT_MIN_ROWS = 30


def range_by_segment(listings: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Coverage and median width of the constant and the adaptive range per segment, held out.

    Each half of the test rows is scored with ranges calibrated on the other half (so no row is
    judged by a range it calibrated); the halves are pooled. Segments: all rows, the predicted-price
    quintiles, and the top-level categories with at least :data:`RANGE_SEGMENT_MIN_ROWS` rows.
    Width is the median ``high / low`` in log1p space (``exp(log1p(high) - log1p(low))``), the
    issue's measure, defined even where the low end is $0. Columns: ``segment``, ``rows``,
    ``coverage_constant``, ``coverage_adaptive``, ``ratio_constant``, ``ratio_adaptive``.
    """
    listings = listings.reset_index(drop=True)
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    n = len(y_true)
    first = np.arange(n) % 2 == 0
    covered = {m: np.zeros(n, dtype=bool) for m in ("constant", "adaptive")}
    ratio = {m: np.zeros(n) for m in ("constant", "adaptive")}
    for held in (first, ~first):
        calibration = listings[~held]
        for method, given in (("constant", None), ("adaptive", calibration)):
            interval = PriceInterval.calibrate(y_true[~held], y_pred[~held], listings=given, min_rows=0)
            low, high = interval.bounds(y_pred[held], listings[held])
            covered[method][held] = (y_true[held] >= low) & (y_true[held] <= high)
            ratio[method][held] = np.exp(np.log1p(high) - np.log1p(low))
    segments: dict[str, np.ndarray] = {"all": np.ones(n, dtype=bool)}
    quintile = pd.qcut(np.log1p(y_pred), 5, labels=False, duplicates="drop")
    for q in np.unique(quintile):
        segments[f"price quintile {q + 1}"] = quintile == q
    top = top_category(listings["category_name"]).to_numpy()
    for category, count in pd.Series(top).value_counts().items():
        if count >= RANGE_SEGMENT_MIN_ROWS:
            segments[str(category)] = top == category
    rows = [
        {
            "segment": name,
            "rows": int(mask.sum()),
            **{f"coverage_{m}": float(covered[m][mask].mean()) for m in covered},
            **{f"ratio_{m}": float(np.median(ratio[m][mask])) for m in ratio},
        }
        for name, mask in segments.items()
    ]
    return pd.DataFrame(rows)
