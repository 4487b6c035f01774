"""The model-selection protocol the quality benchmarks share: repeated CV, paired differences.

A design is kept only when its gain over the reference holds across fold seeds, measured as a
*paired* difference (the same test rows for both models) with an honest standard error:

- folds: ``seeds`` x ``folds`` assignments, each from a salted hash of ``listing_id`` (stable across
  runs and machines, independent between seeds);
- the reference: a plain TF-IDF + one-hot Ridge, its alpha chosen by an inner 3-fold CV on the
  fold's training rows only (no peeking at the test rows);
- the standard error of the mean paired difference is the Nadeau-Bengio corrected one: CV folds
  share training rows, so the naive ``sd / sqrt(n)`` is too optimistic; the correction multiplies
  the variance term by ``1/n + n_test/n_train``.

The decision rule of the issue: the default changes only for a paired gain above 2 standard errors.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from price_alchemy.params import Params
from price_alchemy.split import hash_buckets, split_listings
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.search import fit_tuned_model

REFERENCE = "reference"
ALPHAS = (0.3, 1.0, 3.0, 10.0)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mercari" / "train_head_5k.tsv"
#: The stack's configuration for the candidate benchmarks (``knn_pruning.py``,
#: ``feature_candidates.py``, ``pretrained_text.py``), fixed so that only the candidate differs:
#: the middle of the packaged search space.
FIXED_STACK = {
    "family": "stack",
    "alpha": 6.0,
    "n_neighbors": 15,
    "learning_rate": 0.02,
    "n_estimators": 400,
    "num_leaves": 8,
    "min_child_samples": 30,
}


def _reference_columns(frame: pd.DataFrame) -> pd.DataFrame:
    text = frame[["name", "brand_name", "category_name", "item_description"]].fillna("").astype(str)
    return pd.DataFrame(
        {
            "name_brand": text["name"] + " " + text["brand_name"],
            "all_text": text.agg(" ".join, axis=1),
            "brand": text["brand_name"],
            "category": text["category_name"],
            "condition": frame["item_condition_id"].astype(str),
            "shipping": frame["shipping"].astype(str),
        }
    )


def reference_model(alpha: float = 1.0) -> Pipeline:
    """TF-IDF of name+brand and of all text, one-hot brand/category/condition/shipping, Ridge on log1p."""
    columns = ColumnTransformer(
        [
            ("name_brand", TfidfVectorizer(), "name_brand"),
            ("all_text", TfidfVectorizer(), "all_text"),
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore"),
                ["brand", "category", "condition", "shipping"],
            ),
        ]
    )
    return Pipeline(
        [("prep", FunctionTransformer(_reference_columns)), ("cols", columns), ("ridge", Ridge(alpha=alpha))]
    )


def fit_reference(rest: pd.DataFrame) -> tuple[Pipeline, float]:
    """The reference fitted on ``rest``, its alpha chosen by 3-fold CV on ``rest`` alone."""
    inner = (hash_buckets(rest["listing_id"], "reference-alpha") * 3).astype(int)
    y = np.log1p(rest["price"].to_numpy())

    def cv(alpha: float) -> float:
        losses = []
        for part in range(3):
            held = inner == part
            model = reference_model(alpha).fit(rest[~held], y[~held])
            losses.append(rmsle(rest["price"].to_numpy()[held], np.expm1(model.predict(rest[held]))))
        return statistics.mean(losses)

    alpha = min(ALPHAS, key=cv)
    return reference_model(alpha).fit(rest, y), alpha


def fit_ours(rest: pd.DataFrame, params: Params) -> Pipeline:
    """Price Alchemy's training on ``rest``: tuning on an inner split, the final fit on all of it."""
    inner = split_listings(rest, params.split)
    fitted = fit_tuned_model(
        pd.concat([inner.train, inner.test]), inner.valid, params, on_stage=lambda _m: None
    )
    return fitted.pipeline


def protocol_arguments(description: str | None) -> argparse.ArgumentParser:
    """A parser with the protocol's options: ``--data``, ``--seeds``, ``--folds``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    return parser


def fixed_stack_config(params: Params, **changes: Any) -> dict[str, Any]:
    """:data:`FIXED_STACK` with the packaged stack's fixed sizes, and ``changes``."""
    space = params.tuning.stack.model_dump()
    return {**{k: v for k, v in space.items() if not isinstance(v, tuple)}, **FIXED_STACK, **changes}


def score_reference(paired: Paired, test: pd.DataFrame, rest: pd.DataFrame) -> np.ndarray:
    """Start a fold: record its sizes, fit and score the reference; the test prices."""
    y_test = test["price"].to_numpy()
    paired.test_rows.append(len(test))
    paired.train_rows.append(len(rest))
    reference, _ = fit_reference(rest)
    paired.add(REFERENCE, rmsle(y_test, np.expm1(reference.predict(test))))
    return y_test


@contextmanager
def scratch_tracking() -> Iterator[None]:
    """Trials are nested MLflow runs: keep them in a throw-away SQLite store."""
    import os

    before = os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before


def repeated_folds(
    listings: pd.DataFrame, seeds: int, folds: int
) -> Iterator[tuple[int, int, pd.DataFrame, pd.DataFrame]]:
    """``(seed, fold, test, rest)`` for every fold of every seed."""
    for seed in range(seeds):
        fold_of = (hash_buckets(listings["listing_id"], f"benchmark-folds-{seed}") * folds).astype(int)
        for fold in range(folds):
            test = listings[fold_of == fold].reset_index(drop=True)
            rest = listings[fold_of != fold].reset_index(drop=True)
            yield seed, fold, test, rest


@dataclass
class Paired:
    """Per-fold scores of the candidates, on the same test rows."""

    folds: int
    scores: dict[str, list[float]] = field(default_factory=dict)
    test_rows: list[int] = field(default_factory=list)
    train_rows: list[int] = field(default_factory=list)

    def add(self, candidate: str, score: float) -> None:
        self.scores.setdefault(candidate, []).append(score)

    def difference(self, candidate: str, baseline: str = REFERENCE) -> tuple[float, float, float]:
        """Mean paired difference ``candidate - baseline`` (negative = better), naive and corrected SE."""
        diffs = np.array(self.scores[candidate]) - np.array(self.scores[baseline])
        n = len(diffs)
        variance = float(diffs.var(ddof=1)) if n > 1 else math.inf
        ratio = statistics.mean(self.test_rows) / statistics.mean(self.train_rows)
        return float(diffs.mean()), math.sqrt(variance / n), math.sqrt(variance * (1 / n + ratio))

    def report(self, baseline: str = REFERENCE, default: str | None = None) -> list[str]:
        lines = [
            f"{'candidate':<22} {'RMSLE':>8} {'vs ' + baseline:>14} {'SE (corr.)':>11} {'gain':>7}  verdict"
        ]
        base_mean = statistics.mean(self.scores[baseline])
        for name, values in self.scores.items():
            mean = statistics.mean(values)
            if name == baseline:
                lines.append(f"{name:<22} {mean:>8.4f}")
                continue
            diff, _, se = self.difference(name, baseline)
            gain = -diff / base_mean
            verdict = "gain > 2 SE" if -diff > 2 * se else "not significant" if diff < 0 else "worse"
            lines.append(f"{name:<22} {mean:>8.4f} {diff:>+14.4f} {se:>11.4f} {gain:>7.1%}  {verdict}")
        if default is not None:
            for name in self.scores:
                if name in (baseline, default):
                    continue
                diff, _, se = self.difference(name, default)
                keep = "would replace the default" if -diff > 2 * se else "default stays"
                lines.append(f"{name} vs {default}: {diff:+.4f} (SE {se:.4f}): {keep}")
        return lines
