"""Model quality on real Mercari rows: Price Alchemy's default training vs a plain Ridge reference.

Both are scored by K-fold cross-validation on the same folds (hash of listing_id), in one run:

- reference: Ridge (alpha=1) on TF-IDF of name+brand and TF-IDF of all text, one-hot
  brand/category/condition/shipping, log1p target, fitted on the fold's whole training part;
- price-alchemy: `fit_tuned_model` with the packaged parameters (Hyperopt over the model
  families, blend chosen on an inner validation split, refit on the fold's training part).

    .venv/bin/python benchmarks/model_quality.py [--data PATH] [--folds 5] [--max-evals N] [--timeout S]
        [--families ridge stack]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from price_alchemy.data.files import read_listings
from price_alchemy.params import load_params
from price_alchemy.split import hash_buckets, split_listings
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.search import fit_tuned_model
from price_alchemy.training.stages import usable_for_training

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mercari" / "train_head_5k.tsv"


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


def reference_model() -> Pipeline:
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
        [("prep", FunctionTransformer(_reference_columns)), ("cols", columns), ("ridge", Ridge(alpha=1.0))]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-evals", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument(
        "--families", nargs="+", default=None, help="model families to tune (default: params)"
    )
    args = parser.parse_args()

    params = load_params()
    tuning = params.tuning.model_copy(
        update={
            k: v
            for k, v in {
                "max_evals": args.max_evals,
                "timeout_s": args.timeout,
                "families": tuple(args.families) if args.families else None,
            }.items()
            if v is not None
        }
    )
    params = params.model_copy(update={"tuning": tuning})
    listings = usable_for_training(read_listings(args.data).listings)
    fold_of = (hash_buckets(listings["listing_id"], "benchmark-folds") * args.folds).astype(int)
    print(
        f"data: {args.data} ({len(listings):,} priced rows), {args.folds} folds, "
        f"families {', '.join(tuning.families)}, budget {tuning.max_evals} evals / {tuning.timeout_s:g}s per fold"
    )

    ref_scores, our_scores, our_seconds = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        for fold in range(args.folds):
            test, rest = listings[fold_of == fold], listings[fold_of != fold].reset_index(drop=True)
            y_test = test["price"].to_numpy()
            ref = reference_model().fit(rest, np.log1p(rest["price"].to_numpy()))
            ref_scores.append(rmsle(y_test, np.expm1(ref.predict(test))))
            inner = split_listings(rest, params.split)
            started = time.perf_counter()
            fitted = fit_tuned_model(
                pd.concat([inner.train, inner.test]), inner.valid, params, on_stage=lambda _msg: None
            )
            our_seconds.append(time.perf_counter() - started)
            our_scores.append(rmsle(y_test, fitted.pipeline.predict(test)))
            print(
                f"fold {fold}: n_test={len(test):4d}  reference {ref_scores[-1]:.4f}  "
                f"price-alchemy {our_scores[-1]:.4f}  ({our_seconds[-1]:.0f}s, {len(fitted.tuning.trials)} trials, "
                f"weights {', '.join(f'{k}={v:.2f}' for k, v in fitted.weights.items())})",
                flush=True,
            )

    ref_mean, our_mean = statistics.mean(ref_scores), statistics.mean(our_scores)
    print(f"\nRMSLE mean over folds: reference {ref_mean:.4f}  price-alchemy {our_mean:.4f}")
    print(
        f"improvement: {100 * (1 - our_mean / ref_mean):.1f}% (target >= 4%); "
        f"median fold ratio {statistics.median(o / r for o, r in zip(our_scores, ref_scores, strict=True)):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
