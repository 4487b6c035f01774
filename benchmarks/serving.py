"""Serving benchmark: our API vs `mlflow models serve` on the same registered model and load.

    .venv/bin/python benchmarks/serving.py [--family ridge] [--duration 15] [--concurrency 8]

Trains a model of one family (default ``ridge``: TF-IDF + Ridge) on the real 5k sample into a
temporary PRICE_ALCHEMY_HOME (or uses ``--home`` if it already has a champion), then starts, one
after the other on the same machine:

1. the reference, ``mlflow models serve -m models:/price-alchemy@champion --env-manager local``;
2. ``price-alchemy serve`` with request logging on, then off (alternating ``--rounds`` times).

Each gets the same load from a separate, cheap client process (asyncio, raw HTTP/1.1 keep-alive):
``--concurrency`` closed-loop clients sending single-listing requests for ``--duration`` seconds
(after a warm-up), then one client sending 100-listing batches. Prints requests/s, p50 and p99
and the ratios to the reference. The machine is shared: compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("PRICE_ALCHEMY_SAMPLE", REPO.parent / "shared/data/mercari/train_head_5k.tsv"))
BIN = Path(sys.executable).parent
FIELDS = ("name", "item_condition_id", "category_name", "brand_name", "shipping", "item_description")


# --- load client (runs in its own process) ---------------------------------------------------
async def _worker(
    host: str, port: int, path: bytes, bodies: list[bytes], start: int, t_measure: float, t_stop: float
) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = sent = 0
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    while True:
        now = time.perf_counter()
        if now >= t_stop:
            break
        body = bodies[i % len(bodies)]
        i += 1
        head = (
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path, len(body))
        )
        t0 = time.perf_counter()
        writer.write(head + body)
        status_line = await reader.readline()
        length, close = 0, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        await reader.readexactly(length)
        elapsed = time.perf_counter() - t0
        if t0 >= t_measure:
            sent += 1
            latencies.append(elapsed)
            if status_line.split(b" ")[1:2] != [b"200"]:
                errors += 1
        if close:
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()
    return latencies, errors, sent


async def _load(
    url: str, body_file: Path, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    bodies = [line.encode() for line in body_file.read_text().splitlines() if line]
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    t_measure = time.perf_counter() + warmup
    t_stop = t_measure + duration
    results = await asyncio.gather(
        *[
            _worker(host, int(port), b"/" + path.encode(), bodies, k * 7, t_measure, t_stop)
            for k in range(concurrency)
        ]
    )
    latencies = sorted(x for r in results for x in r[0])
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, math.ceil(q * n) - 1)] * 1000 if n else float("nan")

    return {
        "requests": n,
        "errors": sum(r[1] for r in results),
        "rps": n / duration,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if n else float("nan"),
    }


def run_load(url: str, bodies: list[str], concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("\n".join(bodies))
    try:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "_load",
                url,
                handle.name,
                str(concurrency),
                str(duration),
                str(warmup),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(handle.name)
    return dict(json.loads(out.stdout))


# --- servers ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))}
    env.update(
        PRICE_ALCHEMY_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow starts `uvicorn` from PATH
        **extra,
    )
    return env


# --- model and payloads ----------------------------------------------------------------------
def train(home: Path, family: str) -> str:
    from price_alchemy.config import Settings
    from price_alchemy.data.files import read_listings
    from price_alchemy.params import load_params
    from price_alchemy.training.stages import run_training

    params = load_params().with_budget(max_evals=3, timeout=120)
    params = params.model_copy(update={"tuning": params.tuning.model_copy(update={"families": (family,)})})
    listings = read_listings(SAMPLE).listings
    result = run_training(listings, Settings(_env_file=None, home=home), params, source="benchmark")
    return result.model_version


def sample_listings(n: int = 500) -> list[dict[str, Any]]:
    from price_alchemy.data.files import read_listings

    frame = read_listings(SAMPLE).listings.tail(n)
    rows = []
    for record in frame[list(FIELDS)].to_dict("records"):
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        row["item_condition_id"], row["shipping"] = int(row["item_condition_id"]), int(row["shipping"])
        if not row["name"]:
            continue
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    parser.add_argument("--family", default="ridge", help="model family to train (ridge, stack, ...)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of logging on/off")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="pa-bench-")) / "home"
    if args.home is None:
        started = time.monotonic()
        version = train(home, args.family)
        print(
            f"trained {args.family} v{version} in {time.monotonic() - started:.0f}s into {home}", flush=True
        )
    rows = sample_listings()
    k = args.batch
    singles = [json.dumps(r) for r in rows]
    batches = [json.dumps({"listings": rows[i : i + k]}) for i in range(0, len(rows) - k + 1, k)]
    ref_singles = [json.dumps({"dataframe_records": [r]}) for r in rows]
    ref_batches = [json.dumps({"dataframe_records": rows[i : i + k]}) for i in range(0, len(rows) - k + 1, k)]
    logs = home.parent / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}

    def measure(label: str, url: str, single: list[str], batch: list[str] | None) -> None:
        results[label] = run_load(url, single, args.concurrency, args.duration, args.warmup)
        print(f"{label:<22} single x{args.concurrency}: {json.dumps(results[label])}", flush=True)
        if batch is not None:
            key = f"{label} batch{k}"
            results[key] = run_load(url, batch, 1, args.duration, args.warmup)
            print(f"{key:<22} x1: {json.dumps(results[key])}", flush=True)

    if not args.skip_reference:
        port = _free_port()
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/price-alchemy@champion"]
        cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        proc = _start(cmd, _env(home), logs / "reference.log")
        try:
            print(f"reference ready after {_wait(f'http://127.0.0.1:{port}/ping', proc):.1f}s", flush=True)
            measure("reference", f"http://127.0.0.1:{port}/invocations", ref_singles, ref_batches)
        finally:
            _stop(proc)

    for round_ in range(args.rounds):
        for logging_on in (True, False):
            port = _free_port()
            env = _env(home, PRICE_ALCHEMY_REQUEST_LOG_ENABLED=str(logging_on).lower())
            proc = _start([str(BIN / "price-alchemy"), "serve", "--port", str(port)], env, logs / "ours.log")
            try:
                _wait(f"http://127.0.0.1:{port}/health/ready", proc)
                label = f"ours log={'on' if logging_on else 'off'} r{round_ + 1}"
                measure(label, f"http://127.0.0.1:{port}/v1/predict", singles, None)
                if round_ == 0 and logging_on:
                    key = f"ours batch{k}"
                    results[key] = run_load(
                        f"http://127.0.0.1:{port}/v1/predict/batch", batches, 1, args.duration, args.warmup
                    )
                    print(f"{key:<22} x1: {json.dumps(results[key])}", flush=True)
            finally:
                _stop(proc)
    report(results, args, k)


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, k: int) -> None:
    def median(prefix: str, key: str) -> float:
        values = [r[key] for label, r in results.items() if label.startswith(prefix)]
        return statistics.median(values) if values else float("nan")

    on = {key: median("ours log=on", key) for key in ("rps", "p50_ms", "p99_ms")}
    off = {key: median("ours log=off", key) for key in ("rps", "p50_ms", "p99_ms")}
    ref = results.get("reference", {})
    print(f"\n{'':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, r in results.items():
        print(f"{label:<34}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}")
    if ref:
        print(f"throughput ratio (ours, logging on, median) / reference: {on['rps'] / ref['rps']:.1f}x")
        batch_ref = results.get(f"reference batch{k}", {}).get("p50_ms", float("nan"))
        print(
            f"batch{k} p50: ours {results[f'ours batch{k}']['p50_ms']:.1f} ms vs reference {batch_ref:.1f} ms"
        )
    print(
        f"logging on vs off (medians): rps {on['rps']:.1f} vs {off['rps']:.1f} ({1 - on['rps'] / off['rps']:+.1%} loss), "
        f"p99 {on['p99_ms']:.1f} vs {off['p99_ms']:.1f} ms"
    )
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        url, body_file, conc, dur, warm = sys.argv[2:7]
        print(json.dumps(asyncio.run(_load(url, Path(body_file), int(conc), float(dur), float(warm)))))
    else:
        main()
