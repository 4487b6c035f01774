"""Evaluation plots, written as PNG files for MLflow artifacts and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy.profile import top_category
from price_alchemy.training.evaluate import error_by_band
from price_alchemy.training.tuning import TrialRecord


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: DAG workers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(np.log1p(y_true), np.log1p(y_pred), s=6, alpha=0.35)
    top = float(max(np.log1p(y_true).max(), np.log1p(y_pred).max()))
    ax.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
    ax.set(xlabel="log1p(actual price)", ylabel="log1p(predicted price)", title="Predicted vs actual (test)")
    ax.legend()
    return _save(fig, path)


def residuals_by_category(test: pd.DataFrame, y_pred: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    top = top_category(test["category_name"])
    residual = np.log1p(y_pred) - np.log1p(test["price"].to_numpy())
    frame = pd.DataFrame({"category": top.to_numpy(), "residual": residual})
    order = frame.groupby("category")["residual"].size().sort_values(ascending=False).index[:12]
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.boxplot([frame.loc[frame.category == c, "residual"] for c in order], showfliers=False)
    ax.set_xticks(range(1, len(order) + 1), list(order), rotation=35, ha="right")
    ax.axhline(0, color="black", linewidth=1)
    ax.set(ylabel="log1p(pred) - log1p(actual)", title="Residuals by top-level category (test)")
    return _save(fig, path)


def error_by_price_band(y_true: np.ndarray, y_pred: np.ndarray, baseline: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    model = error_by_band(y_true, y_pred)
    base = error_by_band(y_true, baseline)
    x = np.arange(len(model))
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.bar(x - 0.2, model["rmsle"], width=0.4, label="model")
    ax.bar(x + 0.2, base["rmsle"], width=0.4, label="rules baseline")
    ax.set_xticks(x, [f"${b}\n(n={n})" for b, n in zip(model["band"], model["count"], strict=True)])
    ax.set(ylabel="RMSLE", title="Error by price band (test)")
    ax.legend()
    return _save(fig, path)


def tuning_history(trials: list[TrialRecord], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for family in sorted({t.family for t in trials}):
        points = [
            (t.number, t.valid_rmsle) for t in trials if t.family == family and t.valid_rmsle is not None
        ]
        if points:
            ax.scatter(*zip(*points, strict=True), label=family)
    ok = [(t.number, t.valid_rmsle) for t in trials if t.valid_rmsle is not None]
    if ok:
        numbers, losses = zip(*ok, strict=True)
        ax.plot(numbers, np.minimum.accumulate(losses), color="black", linewidth=1, label="best so far")
    ax.set(xlabel="trial", ylabel="validation RMSLE", title="Hyperopt TPE search")
    ax.legend()
    return _save(fig, path)


def range_by_segment(table: pd.DataFrame, coverage: float, path: Path) -> Path:
    """Held-out coverage and median width of the constant and adaptive ranges per segment."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(table) + 1.5), sharey=True)
    y = np.arange(len(table))
    for offset, method in ((-0.2, "constant"), (0.2, "adaptive")):
        left.barh(y + offset, table[f"coverage_{method}"], height=0.4, label=method)
        right.barh(y + offset, table[f"ratio_{method}"], height=0.4, label=method)
    left.axvspan(coverage - 0.02, coverage + 0.02, color="grey", alpha=0.25, label="target +/- 2 pts")
    left.set_yticks(y, [f"{s} ({n})" for s, n in zip(table["segment"], table["rows"], strict=True)])
    left.invert_yaxis()
    left.set(xlabel="share of held-out listings inside their range", xlim=(0.5, 1.0))
    left.set_title(f"{coverage:.0%} price range: coverage (test, cross-fitted halves)")
    right.set(xlabel="median high / low (log1p space)", title="width")
    left.legend(loc="lower right", fontsize="small", framealpha=0.9)
    return _save(fig, path)
