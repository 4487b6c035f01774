"""Learning curve: Price Alchemy's training and the reference at growing training sizes.

Quality: cross-validation on the real sample (``cv_protocol.repeated_folds``); in each fold the
model and the reference are trained on the first N rows of the fold's training part (by a salted
hash of listing_id, so the 500 rows are inside the 1k ones) and scored on the fold's whole test
part. Time: `price-alchemy train` (the real CLI, ``train_time.run_case``) on synthetic listings of
each ``--time-rows`` size, wall seconds and peak RSS.

    .venv/bin/python benchmarks/learning_curve.py [--sizes 500 1000 2000 4000] [--seeds 1] [--folds 5]
        [--max-evals N] [--timeout S] [--time-rows 10000 100000 1482535] [--skip-time]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cv_protocol import REFERENCE, Paired, fit_ours, fit_reference, repeated_folds, scratch_tracking
from model_quality import DEFAULT, DEFAULT_DATA, with_budget
from train_time import CLI, run_case

from price_alchemy.data.files import read_listings
from price_alchemy.params import load_params
from price_alchemy.split import hash_buckets
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.stages import usable_for_training


def quality(args: argparse.Namespace) -> None:
    params = with_budget(load_params(), args.max_evals, args.timeout, None)
    listings = usable_for_training(read_listings(args.data).listings)
    curves = {size: Paired(args.seeds * args.folds) for size in args.sizes}
    seconds: dict[int, list[float]] = {size: [] for size in args.sizes}
    with scratch_tracking():
        for seed, fold, test, rest in repeated_folds(listings, args.seeds, args.folds):
            order = np.argsort(hash_buckets(rest["listing_id"], "learning-curve"), kind="stable")
            y_test = test["price"].to_numpy()
            for size in args.sizes:
                if size > len(rest):
                    continue
                part = rest.iloc[order[:size]].reset_index(drop=True)
                paired = curves[size]
                paired.test_rows.append(len(test))
                paired.train_rows.append(size)
                reference, _ = fit_reference(part)
                paired.add(REFERENCE, rmsle(y_test, np.expm1(reference.predict(test))))
                started = time.perf_counter()
                paired.add(DEFAULT, rmsle(y_test, fit_ours(part, params).predict(test)))
                seconds[size].append(time.perf_counter() - started)
                print(
                    f"seed {seed} fold {fold} n_train={size:5d}: reference {paired.scores[REFERENCE][-1]:.4f}"
                    f"  price-alchemy {paired.scores[DEFAULT][-1]:.4f} ({seconds[size][-1]:.0f}s)",
                    flush=True,
                )
    print(f"\n{'train rows':>10} {'reference':>10} {'ours':>8} {'gain':>7} {'SE (corr.)':>11} {'fit s':>6}")
    for size, paired in curves.items():
        if not paired.scores:
            continue
        ref, ours = statistics.mean(paired.scores[REFERENCE]), statistics.mean(paired.scores[DEFAULT])
        diff, _, se = paired.difference(DEFAULT)
        print(
            f"{size:>10,} {ref:>10.4f} {ours:>8.4f} {-diff / ref:>7.1%} {se:>11.4f} "
            f"{statistics.median(seconds[size]):>6.0f}"
        )


def train_times(rows: list[int]) -> None:
    print("\ntrain time (`price-alchemy train`, default budget, synthetic listings)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in rows:
            data = folder / f"synthetic_{n}.tsv"
            subprocess.run(
                [str(CLI), "generate", "--rows", str(n), "--output", str(data)],
                check=True,
                env={**os.environ, "PRICE_ALCHEMY_HOME": str(folder / "home-gen")},
                capture_output=True,
            )
            run_case(f"synthetic {n:,}", data, folder / f"home-{n}", [])
            data.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-evals", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--time-rows", type=int, nargs="*", default=[10_000, 100_000, 1_482_535])
    parser.add_argument("--skip-time", action="store_true")
    args = parser.parse_args()
    quality(args)
    if not args.skip_time:
        train_times(args.time_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
