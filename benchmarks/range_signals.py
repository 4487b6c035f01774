"""Issue 13.3: which signals of a listing predict how wrong its price is? (the range's width goal)

The 80% range is as wide as a ``ListingScale`` says a listing is hard: a ridge fit of
``log(|residual| + 0.005)`` on the listing's segments (``price_range.ListingScale.design``). Its
median high/low ratio is about 1.5% below the constant-width range's, where the issue asks 15%.
This measures whether signals the stack computes anyway would get there, each added to the
segments:

- ``knn_spread``: the similarity-weighted standard deviation of the log prices of the listing's
  ``n_neighbors`` nearest training listings (its kNN's own neighbours);
- ``knn_top``: the similarity of the nearest one (how unusual the listing is);
- ``ridge_gap``: |stack - its Ridge| (the parts disagree);
- ``code_counts``: log counts of the listing's brand and category in the training rows.

Residuals are out of fold: the fixed stack of ``cv_protocol.py`` fitted on 4/5 of the real sample,
scored on the rest, every listing once. Each of ``--draws`` draws then plays the training run on a
random half (calibration: two-half cross-fitted conformity scores, the scale refitted on all of
it) and scores the other half. Printed per candidate: the median high/low ratio, how much narrower
it is than the constant range of the same draw, and the coverage (medians over draws).

    .venv/bin/python benchmarks/range_signals.py [--data PATH] [--draws 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from cv_protocol import DEFAULT_DATA, fixed_stack_config, repeated_folds

from price_alchemy.data.files import read_listings
from price_alchemy.estimators import _codes, _lookup
from price_alchemy.features import build_featurizer, build_pipeline
from price_alchemy.params import load_params
from price_alchemy.price_range import SCALE_ALPHA, SCALE_CLIP, SCALE_FLOOR, ListingScale
from price_alchemy.training.families import make_estimator
from price_alchemy.training.stages import usable_for_training

SIGNALS = {
    "segments only (today)": [],
    "+ knn_spread": ["knn_spread"],
    "+ knn_top": ["knn_top"],
    "+ ridge_gap": ["ridge_gap"],
    "+ code_counts": ["brand_count", "category_count"],
    "+ all four": ["knn_spread", "knn_top", "ridge_gap", "brand_count", "category_count"],
}


def out_of_fold(data: Path) -> pd.DataFrame:
    """Every listing of the sample with its out-of-fold log prediction and the stack's signals."""
    params = load_params()
    config = fixed_stack_config(params)
    listings = usable_for_training(read_listings(data).listings)
    parts = []
    for _, _, test, rest in repeated_folds(listings, 1, 5):
        pipeline = build_pipeline(build_featurizer(params.features), make_estimator(config))
        pipeline.fit(rest, rest["price"].to_numpy())
        stack = pipeline.named_steps["model"].estimator_
        X = pipeline.named_steps["features"].transform(test).tocsr()
        sims = np.asarray((stack._text(X) @ stack.knn_reference_.T).todense())
        k = min(stack.n_neighbors, sims.shape[1] - 1)
        nearest = np.argpartition(-sims, k, axis=1)[:, :k]
        top = np.take_along_axis(sims, nearest, axis=1)
        weights = np.clip(top, 1e-6, None) ** 2
        prices = stack.knn_targets_[nearest]
        mean = (weights * prices).sum(1) / weights.sum(1)
        codes = _codes(X, stack.n_codes)
        counts = _lookup(codes, stack.counts_, 0.0)
        log_pred = np.log1p(pipeline.predict(test))
        parts.append(
            test.assign(
                log_pred=log_pred,
                residual=np.log1p(test["price"].to_numpy()) - log_pred,
                knn_spread=np.sqrt((weights * (prices - mean[:, None]) ** 2).sum(1) / weights.sum(1)),
                knn_top=top.max(axis=1),
                ridge_gap=np.abs(log_pred - stack.base_.predict(X)),
                brand_count=counts[:, 0],
                category_count=counts[:, 3],
            )
        )
    return pd.concat(parts, ignore_index=True)


def scale_fit(rows: pd.DataFrame, extra: list[str]) -> object:
    """A ``ListingScale``-like fit on ``rows``: segments + ``extra`` columns (standardised); the
    returned function gives the scale of other rows."""
    segments = ListingScale.fit(rows, np.expm1(rows["log_pred"].to_numpy()), rows["residual"].to_numpy())

    def design(frame: pd.DataFrame) -> np.ndarray:
        base = ListingScale.design(
            frame, frame["log_pred"].to_numpy(), segments.price_edges, segments.categories
        )
        return np.hstack([base, frame[extra].to_numpy(dtype=np.float64)]) if extra else base

    X = design(rows)
    y = np.log(np.abs(rows["residual"].to_numpy()) + SCALE_FLOOR)
    centre, spread = X.mean(axis=0), X.std(axis=0) + 1e-9
    Z = (X - centre) / spread
    weights = np.linalg.solve(Z.T @ Z + SCALE_ALPHA * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))

    def of(frame: pd.DataFrame) -> np.ndarray:
        relative = ((design(frame) - centre) / spread) @ weights
        return np.exp(y.mean() + np.clip(relative, *np.log(SCALE_CLIP)))

    return of


def draw(frame: pd.DataFrame, extra: list[str], rng: np.random.Generator) -> tuple[float, float, float]:
    """(constant ratio, adaptive median ratio, adaptive coverage) of one calibration/scoring split."""
    order = rng.permutation(len(frame))
    calibration = frame.iloc[order[: len(frame) // 2]].reset_index(drop=True)
    scored = frame.iloc[order[len(frame) // 2 :]].reset_index(drop=True)
    levels = [0.1, 0.9]
    low, high = np.quantile(calibration["residual"], levels)
    constant = float(np.exp(high - low))
    first = np.arange(len(calibration)) % 2 == 0
    scores = np.empty(len(calibration))
    for held in (first, ~first):
        of = scale_fit(calibration[~held], extra)
        scores[held] = calibration["residual"].to_numpy()[held] / of(calibration[held])
    low, high = np.quantile(scores, levels)
    scale = scale_fit(calibration, extra)(scored)
    residual = scored["residual"].to_numpy()
    covered = float(np.mean((residual >= low * scale) & (residual <= high * scale)))
    return constant, float(np.median(np.exp((high - low) * scale))), covered


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    frame = out_of_fold(args.data)
    target = np.log(np.abs(frame["residual"]) + SCALE_FLOOR)
    print(f"{len(frame):,} out-of-fold residuals; correlation of each signal with log|residual|:")
    for column in ("knn_spread", "knn_top", "ridge_gap", "brand_count", "category_count", "log_pred"):
        print(f"  {column:<15} {np.corrcoef(frame[column], target)[0, 1]:+.3f}")
    print(f"\n{'candidate':<24} {'median ratio':>12} {'constant':>9} {'narrower':>9} {'coverage':>9}")
    for name, extra in SIGNALS.items():
        rng = np.random.default_rng(0)  # the same draws for every candidate
        constant, ratio, covered = (
            np.median(v) for v in zip(*(draw(frame, extra, rng) for _ in range(args.draws)), strict=True)
        )
        print(f"{name:<24} {ratio:>12.3f} {constant:>9.3f} {1 - ratio / constant:>9.1%} {covered:>9.3f}")
    print("goal: coverage 78-82% and a median ratio at least 15% narrower than the constant range")
    return 0


if __name__ == "__main__":
    sys.exit(main())
