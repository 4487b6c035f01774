"""The stack's kNN without its most common text columns: quality (the issue-13 protocol) and cost.

Issue 12's throughput goal is held back by the stack's text kNN (``StackedRegressor._neighbours``):
a search costs one multiply-add per (query column, reference holding it), and the very common
columns (description words like "and", the name's frequent character n-grams) are nearly all of it.
``tuning.stack.knn_max_df`` leaves the columns held by more than that share of the references out
of the similarity. That is a model change, so it is weighed here by the protocol of
``cv_protocol.py`` on the real sample: ``--seeds`` x ``--folds`` repeated CV, every candidate
trained with the same fixed stack configuration (only ``knn_max_df`` differs) and scored on the
same test rows, the paired difference to the stack that searches every column (``knn_max_df``
1.0, the model before this change) with its Nadeau-Bengio corrected standard error, and the
reference Ridge beside them. A change made for speed is not held to the 2-SE *gain* rule but to a
no-loss rule: its difference plus 2 SE must stay under the promotion margin (0.002), printed last.

For each candidate it also prints the search's cost: the mean multiply-adds per query (the sum
over its columns of the references holding each), the share of queries that fall back to the brute
force, and the seconds of ``_neighbours`` on the fold's test rows.

    .venv/bin/python benchmarks/knn_pruning.py [--data PATH] [--seeds 3] [--folds 5]
        [--max-df 1.0 0.1 0.05 0.02 0.01]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np
from cv_protocol import (
    FIXED_STACK,
    REFERENCE,
    Paired,
    fixed_stack_config,
    protocol_arguments,
    repeated_folds,
    score_reference,
)

from price_alchemy.data.files import read_listings
from price_alchemy.features import build_featurizer, build_pipeline
from price_alchemy.params import load_params
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.families import make_estimator
from price_alchemy.training.stages import usable_for_training


def candidate_name(max_df: float) -> str:
    return "all columns" if max_df >= 1.0 else f"max_df {max_df:g}"


def search_cost(stack: Any, queries: Any) -> tuple[float, float, float]:
    """Mean multiply-adds per query, share of queries short of k references, seconds of the search."""
    reference = stack._search_reference()
    held_by = np.bincount(reference.indices, minlength=reference.shape[1]).astype(np.float64)
    columns = (queries != 0).astype(np.float64)
    overlaps = (columns @ (reference != 0).astype(np.float64).T).getnnz(axis=1)
    short = float(np.mean(overlaps < stack._k(reference.shape[0], None)))
    started = time.perf_counter()
    stack._neighbours(queries)
    return float((columns @ held_by).mean()), short, time.perf_counter() - started


def main() -> int:
    parser = protocol_arguments(__doc__)
    parser.add_argument("--max-df", type=float, nargs="+", default=[1.0, 0.1, 0.05, 0.02, 0.01])
    args = parser.parse_args()

    params = load_params()
    listings = usable_for_training(read_listings(args.data).listings)
    print(
        f"data: {args.data} ({len(listings):,} priced rows); {args.seeds} seeds x {args.folds} folds; "
        f"stack fixed at {FIXED_STACK}"
    )
    paired = Paired(args.seeds * args.folds)
    costs: dict[str, list[tuple[float, float, float]]] = {}
    for seed, fold, test, rest in repeated_folds(listings, args.seeds, args.folds):
        y_test = score_reference(paired, test, rest)
        line = [f"seed {seed} fold {fold}: reference {paired.scores[REFERENCE][-1]:.4f}"]
        for max_df in args.max_df:
            name = candidate_name(max_df)
            config = fixed_stack_config(params, knn_max_df=max_df)
            pipeline = build_pipeline(build_featurizer(params.features), make_estimator(config))
            pipeline.fit(rest, rest["price"].to_numpy())
            paired.add(name, rmsle(y_test, pipeline.predict(test)))
            stack = pipeline.named_steps["model"].estimator_
            queries = stack._text(pipeline.named_steps["features"].transform(test).tocsr())
            costs.setdefault(name, []).append(search_cost(stack, queries))
            line.append(f"{name} {paired.scores[name][-1]:.4f}")
        print("  ".join(line), flush=True)

    baseline = candidate_name(1.0)
    print()
    print("\n".join(paired.report(REFERENCE, None)))
    if baseline in paired.scores:
        margin = params.promotion.margin
        for name in costs:
            if name != baseline:
                diff, _, se = paired.difference(name, baseline)
                verdict = "no loss" if diff + 2 * se < margin else "may cost quality"
                print(f"{name} vs {baseline}: {diff:+.4f} (SE {se:.4f}); + 2 SE < {margin:g}: {verdict}")
    print("\n| candidate | multiply-adds per query | queries short of k | search s (test rows) |")
    print("|---|---:|---:|---:|")
    for name, values in costs.items():
        madds, short, seconds = (statistics.median(v) for v in zip(*values, strict=True))
        print(f"| {name} | {madds:,.0f} | {short:.1%} | {seconds:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
