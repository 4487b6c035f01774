"""Explain benchmark: explained vs plain single-listing requests on the real API, same run.

    .venv/bin/python benchmarks/explain.py [--family stack] [--home HOME] [--duration 15] [--rounds 2]

Trains the default model (the packaged parameters' families: the ``stack`` champion; ``--family
ridge`` for TF-IDF + Ridge) on the real 5k sample into a temporary PRICE_ALCHEMY_HOME (or uses
``--home`` if it has a champion), starts ``price-alchemy serve`` (1 worker, request logging on)
and drives it with ``--concurrency`` (8) closed-loop clients, alternating for ``--rounds``:
plain ``POST /v1/predict`` bodies, then the same listings with ``"explain": true``. Prints p50/p99
of each and the ratios explained/plain, and the server's resident memory. ``--baseline-src DIR``
(a checkout of the code before explanations, e.g. ``git worktree add DIR <commit>``) also starts
that code's server on the same model, with the same plain load, in the same rounds: the plain
path before and after, compared. Reuses the serving
benchmark's trainer, sample, load client and server helpers (benchmarks/serving.py). The machine
is shared: compare the two within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving as bench  # the serving benchmark's helpers

GOAL_P99_MS = 100.0


def rss_mb(pid: int) -> float:
    """Resident memory of a server's process group leader and its children (uvicorn workers)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(status.parent.name) == pid or fields.get("PPid", "").strip() == str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def check_explained(base: str, body: str) -> dict[str, Any]:
    """One explained answer, checked for the shape the benchmark claims to measure."""
    request = urllib.request.Request(
        f"{base}/v1/predict", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = dict(json.load(response))
    explanation = answer["explanation"]
    if not explanation["factors"]["up"] or explanation["similar"] is None:
        raise RuntimeError(f"unexpected explanation: {json.dumps(explanation)[:500]}")
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    parser.add_argument("--family", help="model family to train (default: the packaged params', stack)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, help="a checkout of the code before explain")
    args = parser.parse_args()

    base_dir = Path(tempfile.mkdtemp(prefix="pa-explain-bench-"))
    home = args.home or base_dir / "home"
    try:
        if args.home is None:
            started = time.monotonic()
            version = bench.train(home, args.family)
            print(
                f"trained {args.family or 'default'} v{version} in {time.monotonic() - started:.0f}s",
                flush=True,
            )
        rows = bench.sample_listings()
        plain = [json.dumps(r) for r in rows]
        explained = [json.dumps({**r, "explain": True}) for r in rows]
        logs = base_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "explained": []}
        if args.baseline_src is not None:
            results["plain, before explain"] = []
        for round_ in range(args.rounds):
            if args.baseline_src is not None:
                os.environ["PYTHONPATH"] = str(args.baseline_src.resolve())  # bench._env copies it
                proc, api = bench.start_ours(home, 1, True, logs / "baseline.log")
                del os.environ["PYTHONPATH"]
                try:
                    measure(results, "plain, before explain", round_, api, plain, args)
                    print(f"server RSS: {rss_mb(proc.pid):.0f} MB", flush=True)
                finally:
                    bench._stop(proc)
            proc, api = bench.start_ours(home, 1, True, logs / "server.log")
            try:
                if round_ == 0:
                    answer = check_explained(api, explained[0])
                    up = json.dumps(answer["explanation"]["factors"]["up"][:2])
                    print(f"model v{answer['model']['version']}: {up}", flush=True)
                measure(results, "plain", round_, api, plain, args)
                measure(results, "explained", round_, api, explained, args)
                print(f"server RSS: {rss_mb(proc.pid):.0f} MB", flush=True)
            finally:
                bench._stop(proc)
        report(results)
    finally:
        if args.home is None:
            shutil.rmtree(base_dir, ignore_errors=True)


def measure(
    results: dict[str, list[dict[str, Any]]], label: str, round_: int, api: str, bodies: list[str], args: Any
) -> None:
    result = bench.run_load(f"{api}/v1/predict", bodies, args.concurrency, args.duration, args.warmup)
    results[label].append(result)
    print(f"{label:<22} r{round_ + 1} x{args.concurrency}: {json.dumps(result)}", flush=True)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    def best(label: str, key: str) -> float:  # the best round: the machine is shared
        return min(r[key] for r in results[label])

    print("\n| requests | rps | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for label, runs in results.items():
        for i, r in enumerate(runs):
            print(
                f"| {label} r{i + 1} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
            )
    p50 = best("explained", "p50_ms") / best("plain", "p50_ms")
    p99 = best("explained", "p99_ms") / best("plain", "p99_ms")
    print(f"\nexplained/plain (best rounds): p50 x{p50:.2f}, p99 x{p99:.2f}")
    if results.get("plain, before explain"):
        before50 = best("plain", "p50_ms") / best("plain, before explain", "p50_ms")
        before99 = best("plain", "p99_ms") / best("plain, before explain", "p99_ms")
        print(f"plain after/before explain (best rounds): p50 x{before50:.2f}, p99 x{before99:.2f}")
    worst = max(r["p99_ms"] for r in results["explained"])
    verdict = "met" if worst < GOAL_P99_MS else "MISSED"
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms explained with 8 clients: worst round {worst:.1f} ms ({verdict})")
    if any(r["errors"] for runs in results.values() for r in runs):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
