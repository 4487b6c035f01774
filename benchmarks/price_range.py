"""Issue 13.3 measured: can a listing-specific 80% range beat the constant-width one on real rows?

Out-of-fold predictions of the reference Ridge (``cv_protocol.reference_model``, ``--folds`` folds by
listing_id hash) give one held-out residual ``log1p(price) - log1p(predicted)`` per listing. Each
draw then plays the training run: ``--calibration`` random listings calibrate a range (the test
split's role), every other listing is scored with it. Candidates:

- ``constant``: today's range (``PriceInterval``): the 10% and 90% residual quantiles, the same
  relative width for every listing;
- ``adaptive``: what training now stores (``PriceInterval.calibrate`` given the listings):
  normalized split conformal with a ``ListingScale``, a ridge fit of ``log(|residual| + 0.02)`` on
  segments a listing carries (predicted-price quintile, top-level category, brand known,
  description missing, condition, shipping), cross-fitted in two halves of the calibration rows
  for the conformity scores, refitted on all of them for the scale;
- ``text``: the same, the difficulty model a ridge on TF-IDF of the listing's text plus the
  predicted log-price (an upper bound on what the text says about difficulty, fitted out of fold
  on all residuals; not a deployable range).

Printed per candidate (medians over ``--draws``): coverage overall, per predicted-price quintile and
per top-level category with at least 200 scored listings, and the median high/low ratio. The goal
of the issue: coverage 78-82% everywhere, median ratio at least 15% below ``constant``.

    .venv/bin/python benchmarks/price_range.py [--data PATH] [--folds 5] [--draws 40] [--calibration 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from cv_protocol import reference_model, repeated_folds
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_predict

from price_alchemy.data.files import read_listings
from price_alchemy.price_range import PriceInterval
from price_alchemy.training.stages import usable_for_training

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mercari" / "train_head_5k.tsv"
LOW, HIGH = 0.1, 0.9
MIN_SEGMENT = 200


def out_of_fold(listings: pd.DataFrame, folds: int) -> pd.DataFrame:
    parts = []
    for _seed, _fold, test, rest in repeated_folds(listings, 1, folds):
        model = reference_model(3.0).fit(rest, np.log1p(rest["price"].to_numpy()))
        parts.append(test.assign(log_pred=model.predict(test)))
    scored = pd.concat(parts, ignore_index=True)
    scored["residual"] = np.log1p(scored["price"].to_numpy()) - scored["log_pred"].to_numpy()
    scored["top_category"] = scored["category_name"].fillna("").str.split("/").str[0].replace("", "unknown")
    return scored


def text_scale(scored: pd.DataFrame) -> np.ndarray:
    text = (
        scored["name"].fillna("")
        + " "
        + scored["brand_name"].fillna("")
        + " "
        + scored["item_description"].fillna("")
    )
    X = TfidfVectorizer(min_df=3, ngram_range=(1, 2), sublinear_tf=True).fit_transform(text)
    log_pred = scored["log_pred"].to_numpy()[:, None]
    X = hstack([X, csr_matrix(np.hstack([log_pred, log_pred**2]))]).tocsr()
    y = np.log(np.abs(scored["residual"].to_numpy()) + 0.02)
    return np.exp(cross_val_predict(Ridge(alpha=10.0), X, y, cv=5))


def report(name: str, covered: list[np.ndarray], ratio: list[float], scored: list[pd.DataFrame]) -> None:
    overall = np.median([c.mean() for c in covered])
    line = [f"{name:9s} coverage {overall:.3f}  median high/low {np.median(ratio):.3f}"]
    segments: dict[str, list[float]] = {}
    for c, frame in zip(covered, scored, strict=True):
        quintile = pd.qcut(frame["log_pred"], 5, labels=False).to_numpy()
        for q in range(5):
            segments.setdefault(f"q{q + 1}", []).append(float(c[quintile == q].mean()))
        for category, rows in frame.groupby("top_category").indices.items():
            if len(rows) >= MIN_SEGMENT:
                segments.setdefault(str(category), []).append(float(c[rows].mean()))
    line.append("  ".join(f"{k} {np.median(v):.3f}" for k, v in segments.items()))
    print("\n    ".join(line))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--calibration", type=int, default=500)
    args = parser.parse_args()

    scored = out_of_fold(usable_for_training(read_listings(args.data).listings), args.folds)
    scored["text_scale"] = text_scale(scored)
    print(f"{len(scored):,} out-of-fold residuals; {args.draws} draws of {args.calibration} calibration rows")
    rng = np.random.default_rng(0)
    results: dict[str, tuple[list[np.ndarray], list[float]]] = {
        k: ([], []) for k in ("constant", "adaptive", "text")
    }
    evaluated: list[pd.DataFrame] = []
    for _ in range(args.draws):
        order = rng.permutation(len(scored))
        calibration, rest = scored.iloc[order[: args.calibration]], scored.iloc[order[args.calibration :]]
        residual = rest["residual"].to_numpy()
        evaluated.append(rest)
        for name, listings in (("constant", None), ("adaptive", calibration)):
            interval = PriceInterval.calibrate(
                calibration["price"].to_numpy(),
                np.expm1(calibration["log_pred"].to_numpy()),
                listings=listings,
            )
            low, high = (np.log1p(b) for b in interval.bounds(np.expm1(rest["log_pred"].to_numpy()), rest))
            log_pred = rest["log_pred"].to_numpy()
            results[name][0].append((residual >= low - log_pred) & (residual <= high - log_pred))
            results[name][1].append(float(np.median(np.exp(high - low))))
        # The text upper bound: the same normalized calibration, the scale fitted out of fold on all rows.
        scores = calibration["residual"].to_numpy() / calibration["text_scale"].to_numpy()
        q_low, q_high = np.quantile(scores, [LOW, HIGH])
        width = rest["text_scale"].to_numpy()
        results["text"][0].append((residual >= q_low * width) & (residual <= q_high * width))
        results["text"][1].append(float(np.median(np.exp((q_high - q_low) * width))))
    for name, (covered, ratio) in results.items():
        report(name, covered, ratio, evaluated)
    constant = np.median(results["constant"][1])
    for name in ("adaptive", "text"):
        print(
            f"{name}: median ratio {1 - np.median(results[name][1]) / constant:+.1%} narrower than constant (goal +15%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
