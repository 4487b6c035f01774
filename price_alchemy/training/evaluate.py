"""Regression metrics, in dollars, with RMSLE as the headline."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score


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
