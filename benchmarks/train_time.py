"""Wall time and peak memory of `price-alchemy train` with the default budget.

Each case runs the real CLI in a fresh PRICE_ALCHEMY_HOME (so MLflow, DuckDB and the registry
are exercised too) and reports wall seconds and the child's peak RSS against the issue's targets:
5k rows < 5 min, 100k synthetic rows < 15 min, the full 1.48M-row size within 16 GB.

    .venv/bin/python benchmarks/train_time.py                 # real 5k sample + 100k synthetic
    .venv/bin/python benchmarks/train_time.py --rows 100000 1482535 --skip-real
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "price-alchemy"
REAL_SAMPLE = ROOT.parent / "shared" / "data" / "mercari" / "train_head_5k.tsv"
TARGET_SECONDS = {5_001: 300, 100_000: 900}
MEMORY_LIMIT_GB = 16


def run_case(label: str, data: Path, home: Path, extra: list[str]) -> tuple[float, float, int]:
    env = {**os.environ, "PRICE_ALCHEMY_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(
        [str(CLI), "train", "--input", str(data), *extra], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    # ru_maxrss of children is the largest peak among them, in KiB on Linux.
    peak_gb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024**2
    tail = [line for line in proc.stdout.splitlines() if "RMSLE" in line or "model " in line]
    print(f"{label}: exit {proc.returncode}, {seconds:.0f}s, peak RSS {peak_gb:.2f} GB :: {' | '.join(tail)}")
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return seconds, peak_gb, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000], help="synthetic sizes")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_real and REAL_SAMPLE.exists():
            results.append(("real 5k", 5_001, *run_case("real 5k", REAL_SAMPLE, folder / "home-real", [])))
        for rows in args.rows:
            data = folder / f"synthetic_{rows}.tsv"
            subprocess.run(
                [str(CLI), "generate", "--rows", str(rows), "--output", str(data)],
                check=True,
                env={**os.environ, "PRICE_ALCHEMY_HOME": str(folder / "home-gen")},
                capture_output=True,
            )
            results.append(
                (
                    f"synthetic {rows:,}",
                    rows,
                    *run_case(f"synthetic {rows:,}", data, folder / f"home-{rows}", []),
                )
            )
    print("\ncase               rows        seconds  target   peak GB (limit 16)")
    failed = False
    for label, rows, seconds, peak, code in results:
        target = TARGET_SECONDS.get(rows)
        ok = code == 0 and (target is None or seconds < target) and peak < MEMORY_LIMIT_GB
        failed |= not ok
        print(
            f"{label:18s} {rows:>9,}  {seconds:>8.0f}  {target or '-'!s:>6}  {peak:>8.2f}   {'OK' if ok else 'MISSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
