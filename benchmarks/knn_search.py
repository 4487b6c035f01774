"""The stack's text kNN: the sparse_dot_topn search against the brute force it replaced (issue 12).

    .venv/bin/python benchmarks/knn_search.py [--rows 20000] [--repeats 3] [--home DIR] [--max-df F]

The default champion (``benchmarks/batch_scoring.py`` trains one, or the one in ``--home``) prices
``--rows`` synthetic listings; their weighted text is searched against the champion's kNN
reference five ways, ``--repeats`` times each, and the median seconds are printed:

- **brute force** (the reference): every similarity densified, then the ``k`` largest per row
  (``StackedRegressor._neighbours_brute``, the search before issue 12), on one core;
- **sparse_dot_topn** (``StackedRegressor._neighbours``) on every column, pinned to one core, and
  on every core;
- the same without the columns held by more than ``--max-df`` of the references
  (``tuning.stack.knn_max_df``, default the parameters file's), one core and every core, with the
  multiply-adds per query before and after (``benchmarks/knn_pruning.py`` weighs its quality).

It also prints how far the two answers are apart: rows whose ``k``-th and ``k+1``-th similarities
differ (no tie at the boundary) must agree to float precision; tied rows may pick a different, equally
near, neighbour. The machine is shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_scoring import train_champion


def _stack_and_queries(home: Path, rows: int) -> tuple[Any, Any]:
    import scipy.sparse as sp

    from price_alchemy import mlflow_store
    from price_alchemy.config import Settings
    from price_alchemy.data.synthetic import generate_listings
    from price_alchemy.schema import FEATURE_COLUMNS

    settings = Settings(_env_file=None, home=home)
    mlflow_store.configure(settings)
    pipeline = mlflow_store.load_model(settings, mlflow_store.resolve_model_uri(settings))
    stack = pipeline.steps[-1][1].estimator_
    frame = generate_listings(rows, seed=99, with_price=False)[list(FEATURE_COLUMNS)]
    X = sp.csr_matrix(pipeline[:-1].transform(frame), dtype=np.float32)
    return stack, stack._text(X)


def _median_seconds(run: Any, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    parser.add_argument(
        "--max-df", type=float, help="default: tuning.stack.knn_max_df of the parameters file"
    )
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from price_alchemy.estimators import KNN_THREADS, searched_columns
    from price_alchemy.params import load_params

    max_df = args.max_df if args.max_df is not None else load_params().tuning.stack.knn_max_df

    threadpool_limits(1)
    with tempfile.TemporaryDirectory(prefix="price-alchemy-knn-") as tmp:
        home = args.home or Path(tmp) / "home"
        if args.home is None:
            train_champion(home)
        stack, queries = _stack_and_queries(home, args.rows)
    reference = stack.knn_reference_
    print(
        f"{queries.shape[0]:,} queries ({queries.nnz / queries.shape[0]:.0f} words each) against "
        f"{reference.shape[0]:,} references ({reference.shape[1]:,} columns), k = {stack.n_neighbors}, "
        f"{KNN_THREADS} sparse_dot_topn threads, {os.cpu_count()} cores"
    )
    stack.knn_columns_ = None  # every column, whatever the champion was trained with
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    brute_s, brute = _median_seconds(lambda: stack._neighbours_brute(queries), args.repeats)
    one_s, fast = _median_seconds(lambda: stack._neighbours(queries), args.repeats)
    stack.knn_columns_ = searched_columns(reference, max_df)
    pruned_one_s, _ = _median_seconds(lambda: stack._neighbours(queries), args.repeats)
    os.sched_setaffinity(0, cores)
    pruned_all_s, _ = _median_seconds(lambda: stack._neighbours(queries), args.repeats)
    searched = stack._search_reference()
    stack.knn_columns_ = None
    all_s, _ = _median_seconds(lambda: stack._neighbours(queries), args.repeats)
    columns = (queries != 0).astype(np.float64)
    print(
        "multiply-adds per query: every column "
        f"{(columns @ np.bincount(reference.indices, minlength=reference.shape[1])).mean():,.0f}, "
        f"without the columns held by more than {max_df:g} of the references "
        f"{(columns @ np.bincount(searched.indices, minlength=reference.shape[1])).mean():,.0f}"
    )

    sims = np.sort(np.asarray((queries @ reference.T).todense()), axis=1)[:, ::-1]
    k = stack.n_neighbors
    untied = sims[:, k - 1] > sims[:, k] + 1e-6
    gap = np.abs(fast - brute)
    print(
        f"rows without a tie at the k-th neighbour: {untied.mean():.1%}; max |difference| there: "
        f"mean log price {gap[untied, 0].max():.2e}, top similarity {gap[:, 1].max():.2e}; "
        f"on tied rows, median {np.median(gap[~untied, 0]) if (~untied).any() else 0:.2e}"
    )
    print("\n| search | seconds (median) | rows/s | x brute force |")
    print("|---|---:|---:|---:|")
    for label, seconds in (
        ("brute force (before), one core", brute_s),
        ("sparse_dot_topn, one core", one_s),
        (f"sparse_dot_topn, {len(cores)} cores", all_s),
        (f"sparse_dot_topn, max_df {max_df:g}, one core", pruned_one_s),
        (f"sparse_dot_topn, max_df {max_df:g}, {len(cores)} cores", pruned_all_s),
    ):
        print(f"| {label} | {seconds:.2f} | {queries.shape[0] / seconds:,.0f} | {brute_s / seconds:.1f} |")


if __name__ == "__main__":
    main()
