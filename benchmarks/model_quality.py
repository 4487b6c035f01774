"""Model quality on real Mercari rows: Price Alchemy's training vs a plain Ridge reference.

The protocol of ``cv_protocol.py``: ``--seeds`` x ``--folds`` repeated cross-validation (fold
assignments from salted hashes of listing_id), every candidate scored on the same test rows, the
paired difference to the reference with its Nadeau-Bengio corrected standard error. Candidates:

- ``reference``: TF-IDF + one-hot Ridge, alpha chosen by 3-fold CV on the fold's training rows;
- ``default``: the packaged parameters, as ``price-alchemy train`` runs them (Hyperopt over the
  families on an inner validation split, then the final fit on the fold's training rows);
- ``families=<a>+<b>`` for each ``--families`` option given (other family sets, same budget);
- ``meaning=<w>`` for each ``--meaning-weight`` given (``features.meaning_weight``, the pretrained
  word-vector blocks; 0 turns them off).

The default changes only for a paired gain above 2 standard errors (``would replace the default``).

    .venv/bin/python benchmarks/model_quality.py [--data PATH] [--seeds 3] [--folds 5]
        [--max-evals N] [--timeout S] [--families ridge] [--families ridge stack] [--meaning-weight 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from cv_protocol import (
    DEFAULT_DATA,
    REFERENCE,
    Paired,
    fit_ours,
    fit_reference,
    repeated_folds,
    scratch_tracking,
)

from price_alchemy.data.files import read_listings
from price_alchemy.params import Params, load_params
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.stages import usable_for_training

DEFAULT = "default"


def with_budget(
    params: Params, max_evals: int | None, timeout: float | None, families: list[str] | None
) -> Params:
    update = {"max_evals": max_evals, "timeout_s": timeout, "families": tuple(families) if families else None}
    tuning = params.tuning.model_copy(update={k: v for k, v in update.items() if v is not None})
    return params.model_copy(update={"tuning": tuning})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-evals", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--families", nargs="+", action="append", default=[], help="an extra candidate")
    parser.add_argument(
        "--meaning-weight", type=float, action="append", default=[], help="an extra candidate"
    )
    args = parser.parse_args()

    base = load_params()
    candidates = {DEFAULT: with_budget(base, args.max_evals, args.timeout, None)}
    for families in args.families:
        candidates["families=" + "+".join(families)] = with_budget(
            base, args.max_evals, args.timeout, families
        )
    for weight in args.meaning_weight:
        default = candidates[DEFAULT]
        features = default.features.model_copy(update={"meaning_weight": weight})
        candidates[f"meaning={weight:g}"] = default.model_copy(update={"features": features})
    listings = usable_for_training(read_listings(args.data).listings)
    tuning = candidates[DEFAULT].tuning
    print(
        f"data: {args.data} ({len(listings):,} priced rows); {args.seeds} seeds x {args.folds} folds; "
        f"default families {', '.join(tuning.families)}, budget {tuning.max_evals} evals / {tuning.timeout_s:g}s"
    )
    paired = Paired(args.seeds * args.folds)
    with scratch_tracking():
        for seed, fold, test, rest in repeated_folds(listings, args.seeds, args.folds):
            y_test = test["price"].to_numpy()
            paired.test_rows.append(len(test))
            paired.train_rows.append(len(rest))
            reference, alpha = fit_reference(rest)
            paired.add(REFERENCE, rmsle(y_test, np.expm1(reference.predict(test))))
            line = [
                f"seed {seed} fold {fold}: n_test={len(test):4d} reference {paired.scores[REFERENCE][-1]:.4f} (alpha {alpha:g})"
            ]
            for name, params in candidates.items():
                started = time.perf_counter()
                pipeline = fit_ours(rest, params)
                paired.add(name, rmsle(y_test, pipeline.predict(test)))
                line.append(f"{name} {paired.scores[name][-1]:.4f} ({time.perf_counter() - started:.0f}s)")
            print("  ".join(line), flush=True)
    print()
    print("\n".join(paired.report(REFERENCE, DEFAULT)))
    print("goal: >= 4% better than the reference on unseen listings, RMSLE <= 0.530 on the sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
