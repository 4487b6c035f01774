"""Batch scoring at the size of the Kaggle stage-2 test set: rows/s and peak memory, file and warehouse.

    .venv/bin/python benchmarks/batch_scoring.py [--rows 3400000] [--small-rows 340000] [--home DIR]

1. The **default champion**: the packaged parameters (the ``stack`` family, full budget) trained on
   10,000 synthetic listings, as ``price-alchemy demo`` and the training DAG make it (or the
   champion already in ``--home``).
2. ``--rows`` synthetic listings in the Kaggle test layout (``test_id``; written in blocks, so
   generating them needs little memory), and the same listings loaded into the DuckDB warehouse
   in batches of 200,000.
3. The **reference**: the champion's ``pipeline.predict`` in this process on 20,000 of them
   (one process: its Python is one core, the kNN's C++ search uses two threads), measured before
   and after the runs below; its median is the yardstick.
4. ``price-alchemy predict --strict`` (the path before issue 12: one process, Great Expectations
   row rules, the whole file in memory) on the small file, for a same-machine comparison; then
   ``price-alchemy predict`` on the file at ``--small-rows`` and at ``--rows`` (memory must not
   grow with the file), then ``price-alchemy score`` on the warehouse, each a real process.

For each run: wall seconds, rows/s, its ratio to the reference, and the **peak RSS of the whole
process tree** (the command and its worker processes, summed; sampled every 0.2 s, so shared
pages count twice: an upper bound). Goals of issue 12: >= 8,000 rows/s on the two cores, peak
RSS < 3 GB whatever the row count. The machine is shared and noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "price-alchemy"
BLOCK = 200_000
GOAL_ROWS_PER_S, GOAL_RSS_GB = 8_000, 3.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))}
    return {**env, "PRICE_ALCHEMY_HOME": str(home), "COLUMNS": "200"}


def train_champion(home: Path) -> None:
    from price_alchemy import runtime
    from price_alchemy.config import Settings
    from price_alchemy.data.synthetic import generate_listings
    from price_alchemy.training.stages import run_training

    settings, params = runtime.start(Settings(_env_file=None, home=home))
    started = time.perf_counter()
    result = run_training(generate_listings(10_000, seed=0), settings, params, source="benchmark")
    print(
        f"default champion: v{result.model_version}, families {list(params.tuning.families)}, test RMSLE "
        f"{result.test_metrics['rmsle']:.4f}, trained in {time.perf_counter() - started:.0f}s"
    )


def write_data(path: Path, rows: int, home: Path | None) -> None:
    """``rows`` test-format listings to ``path``; also into the warehouse of ``home`` when given."""
    from price_alchemy.config import Settings
    from price_alchemy.data.synthetic import generate_listings
    from price_alchemy.data.warehouse import open_warehouse

    warehouse = open_warehouse(Settings(_env_file=None, home=home)) if home else None
    started = time.perf_counter()
    with path.open("w", encoding="utf-8", newline="") as handle:
        for start in range(0, rows, BLOCK):
            block = generate_listings(min(BLOCK, rows - start), seed=1000 + start // BLOCK, start_id=start)
            out = block.drop(columns="price").rename(columns={"listing_id": "test_id"})
            out.to_csv(handle, sep="\t", index=False, header=start == 0, lineterminator="\n")
            if warehouse is not None:
                warehouse.load_batch(block.assign(price=float("nan")), f"bench_{start // BLOCK:03d}")
    if warehouse is not None:
        warehouse.close()
    print(
        f"wrote {rows:,} listings to {path.name}{' and the warehouse' if home else ''} in {time.perf_counter() - started:.0f}s"
    )


def reference_rate(home: Path, rows: int = 20_000) -> float:
    """Rows/s of the champion's ``pipeline.predict`` in this process, one call on ``rows`` listings."""
    from price_alchemy import mlflow_store
    from price_alchemy.config import Settings
    from price_alchemy.data.synthetic import generate_listings
    from price_alchemy.schema import FEATURE_COLUMNS

    settings = Settings(_env_file=None, home=home)
    mlflow_store.configure(settings)
    model = mlflow_store.load_model(settings, mlflow_store.resolve_model_uri(settings))
    frame = generate_listings(rows, seed=99, with_price=False)[list(FEATURE_COLUMNS)]
    model.predict(frame.head(500))  # warm-up
    started = time.perf_counter()
    model.predict(frame)
    return rows / (time.perf_counter() - started)


def measure(label: str, args: list[str], home: Path, rows: int) -> dict[str, Any]:
    """Run the CLI, sampling the RSS of its process tree; wall time, rows/s and peak RSS."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), *args], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    result = {
        "label": label,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_gb": peak / 1024**3,
    }
    status = "ok" if proc.returncode == 0 else f"EXIT {proc.returncode}"
    print(
        f"{label}: {status}, {rows:,} rows in {seconds:.0f}s = {result['rows_per_s']:,.0f} rows/s, "
        f"peak RSS (tree) {result['peak_rss_gb']:.2f} GB"
    )
    if proc.returncode != 0:
        print(out[-2000:], err[-4000:], file=sys.stderr)
        raise SystemExit(proc.returncode)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=3_400_000)
    parser.add_argument("--small-rows", type=int, default=340_000)
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="price-alchemy-bench-") as tmp:
        folder = Path(tmp)
        home = args.home or folder / "home"
        if args.home is None:
            train_champion(home)
        big, small = folder / "test_big.tsv", folder / "test_small.tsv"
        write_data(small, args.small_rows, None)
        write_data(big, args.rows, home)
        references = [reference_rate(home)]
        print(f"reference pipeline.predict (one process): {references[0]:,.0f} rows/s")
        runs = [
            # the path before issue 12, for a same-machine comparison: one process, GE row rules
            measure(
                "predict --strict (before), file",
                ["predict", "--strict", "-i", str(small), "-o", str(folder / "strict.csv")],
                home,
                args.small_rows,
            ),
            measure(
                "predict, file",
                ["predict", "-i", str(small), "-o", str(folder / "small.csv")],
                home,
                args.small_rows,
            ),
            measure(
                "predict, file", ["predict", "-i", str(big), "-o", str(folder / "big.csv")], home, args.rows
            ),
            measure("score, warehouse", ["score"], home, args.rows),
        ]
        references.append(reference_rate(home))
        print(f"reference pipeline.predict (one process), after: {references[1]:,.0f} rows/s")
    reference = statistics.median(references)
    print("\n| run | rows | rows/s | x reference | peak RSS (tree) |")
    print("|---|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run['label']} | {run['rows']:,} | {run['rows_per_s']:,.0f} | {run['rows_per_s'] / reference:.2f} "
            f"| {run['peak_rss_gb']:.2f} GB |"
        )
    print(
        f"| reference pipeline.predict, one process (median of {len(references)}) | 20,000 | {reference:,.0f} | 1.00 | |"
    )
    best = max(r["rows_per_s"] for r in runs if r["rows"] == args.rows)
    peak = max(r["peak_rss_gb"] for r in runs)
    print(
        f"\ngoal >= {GOAL_ROWS_PER_S:,} rows/s: best full-size run {best:,.0f} ({'met' if best >= GOAL_ROWS_PER_S else 'NOT met'}); "
        f"goal peak RSS < {GOAL_RSS_GB} GB: {peak:.2f} GB ({'met' if peak < GOAL_RSS_GB else 'NOT met'})"
    )
    print("BENCH_JSON=" + json.dumps({"reference": references, "runs": runs}))


if __name__ == "__main__":
    main()
