"""Serving benchmark: our API with 1 and N workers vs `mlflow models serve`, same model, same load.

    .venv/bin/python benchmarks/serving.py [--family stack] [--workers 1,2] [--duration 15] [--rounds 2]

Trains a model (default: the packaged parameters' families, i.e. the default ``stack`` champion;
``--family ridge`` for TF-IDF + Ridge) on the real 5k sample into a temporary PRICE_ALCHEMY_HOME
(or uses ``--home`` if it already has a champion), then starts, one after the other on the same
machine:

1. the reference, ``mlflow models serve -m models:/price-alchemy@champion --env-manager local``;
2. ``price-alchemy serve --workers W`` for each W of ``--workers``, request logging on,
   alternating ``--rounds`` times (``--logging-off`` adds a 1-worker run with logging off).

Each gets the same load from a separate, cheap client process (asyncio, raw HTTP/1.1 keep-alive):
``--concurrency`` closed-loop clients sending single-listing requests for ``--duration`` seconds
(after a warm-up), then one client sending 100-listing batches. Prints requests/s, p50 and p99,
the CPU the server's processes and the load client used (cores = CPU seconds / wall seconds: where
the two shared cores went), and the ratios. After each run of ours, ``price-alchemy ship --once``
ships the run's request events into Elasticsearch (a temporary node, or ``--es-url``) and the
benchmark checks that the documents added equal the requests answered (warm-up included).
The machine is shared: compare ratios within a run, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
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

import shipping

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("PRICE_ALCHEMY_SAMPLE", REPO.parent / "shared/data/mercari/train_head_5k.tsv"))
BIN = Path(sys.executable).parent
FIELDS = ("name", "item_condition_id", "category_name", "brand_name", "shipping", "item_description")


# --- load client (runs in its own process) ---------------------------------------------------
async def _worker(
    host: str, port: int, path: bytes, bodies: list[bytes], start: int, t_measure: float, t_stop: float
) -> tuple[list[float], int, int]:
    """Latencies and errors of the measured requests, and every answer (warm-up included)."""
    latencies: list[float] = []
    errors = sent = answered = 0
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
        answered += 1
        if t0 >= t_measure:
            sent += 1
            latencies.append(elapsed)
            if status_line.split(b" ")[1:2] != [b"200"]:
                errors += 1
        if close:
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()
    return latencies, errors, answered


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
        "answered": sum(r[2] for r in results),
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
def train(home: Path, family: str | None) -> str:
    """Train and promote a champion of ``family`` (None: the packaged parameters' families)."""
    from price_alchemy.config import Settings
    from price_alchemy.data.files import read_listings
    from price_alchemy.params import load_params
    from price_alchemy.training.stages import run_training

    params = load_params().with_budget(max_evals=3, timeout=120)
    if family is not None:
        tuning = params.tuning.model_copy(update={"families": (family,)})
        params = params.model_copy(update={"tuning": tuning})
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


TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group, from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def metric_sum(base_url: str, name: str) -> float:
    """The sum of a metric's samples on ``/metrics`` (every label set; every worker)."""
    text = urllib.request.urlopen(f"{base_url}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def start_ours(home: Path, workers: int, logging_on: bool, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``price-alchemy serve --workers W`` started and ready (every worker has loaded the model)."""
    port = _free_port()
    env = _env(home, PRICE_ALCHEMY_REQUEST_LOG_ENABLED=str(logging_on).lower())
    cmd = [str(BIN / "price-alchemy"), "serve", "--port", str(port), "--workers", str(workers)]
    proc = _start(cmd, env, log)
    base = f"http://127.0.0.1:{port}"
    _wait(f"{base}/health/ready", proc)
    deadline = time.monotonic() + 300
    while metric_sum(base, "price_alchemy_model_swaps_total") < workers:  # each worker's first load
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{workers} workers not ready; see {log}")
        time.sleep(0.5)
    return proc, base


def es_count(url: str) -> int:
    index = f"{url}/{shipping.INDICES}"
    refresh = urllib.request.Request(f"{index}/_refresh?allow_no_indices=true", method="POST")
    urllib.request.urlopen(refresh, timeout=60).close()
    with urllib.request.urlopen(f"{index}/_count?allow_no_indices=true", timeout=60) as response:
        return int(json.load(response)["count"])


def ship_once(home: Path, url: str, log: Path) -> None:
    env = _env(home, PRICE_ALCHEMY_ELASTICSEARCH_URL=url)
    with log.open("ab") as out:
        cmd = [str(BIN / "price-alchemy"), "ship", "--once"]
        subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=900)


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    """The whole process group of a node started by ``shipping.start_node``: launcher and JVM."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    for _ in range(150):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    parser.add_argument("--family", help="model family to train (default: the packaged params', stack)")
    parser.add_argument("--workers", default="1,2", help="worker counts of ours to compare, e.g. 1,2")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the worker counts")
    parser.add_argument("--logging-off", action="store_true", help="also 1 worker with logging off")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--es-url", help="Elasticsearch to ship into (default: start a temporary node)")
    parser.add_argument("--no-ship", action="store_true", help="skip the shipped == answered check")
    parser.add_argument("--keep-home", action="store_true", help="keep the trained home (printed)")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    base = Path(tempfile.mkdtemp(prefix="pa-bench-"))
    base.chmod(0o755)  # as root the node runs as `nobody`
    home = args.home or base / "home"
    node = None
    try:
        url = args.es_url
        if not args.no_ship and url is None:
            node, url, start_s = shipping.start_node(base)
            print(f"elasticsearch node {url} answered after {start_s:.0f}s", flush=True)
        if args.home is None:
            started = time.monotonic()
            version = train(home, args.family)
            print(
                f"trained {args.family or 'default'} v{version} in {time.monotonic() - started:.0f}s",
                flush=True,
            )
        run(home, args, worker_counts, url)
    finally:
        if node is not None:
            stop_node(node)
        if args.home is None and not args.keep_home:
            shutil.rmtree(base, ignore_errors=True)
        elif args.home is None:
            print(f"home kept: {home}")


def run(home: Path, args: argparse.Namespace, worker_counts: list[int], url: str | None) -> None:
    rows = sample_listings()
    k = args.batch
    singles = [json.dumps(r) for r in rows]
    batches = [json.dumps({"listings": rows[i : i + k]}) for i in range(0, len(rows) - k + 1, k)]
    ref_singles = [json.dumps({"dataframe_records": [r]}) for r in rows]
    ref_batches = [json.dumps({"dataframe_records": rows[i : i + k]}) for i in range(0, len(rows) - k + 1, k)]
    logs = home.parent / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}

    def measure(
        label: str, url_: str, bodies: list[str], proc: subprocess.Popen[bytes], clients: int
    ) -> None:
        cpu, client_cpu, wall = group_cpu_seconds(proc.pid), _children_cpu(), time.monotonic()
        result = run_load(url_, bodies, clients, args.duration, args.warmup)
        wall = time.monotonic() - wall
        cpu = group_cpu_seconds(proc.pid) - cpu
        result["server_cores"] = cpu / wall  # over the whole run: client start-up, warm-up, load
        result["client_cores"] = (_children_cpu() - client_cpu) / wall
        result["server_cpu_ms"] = cpu * 1000 / max(result["answered"], 1)  # per request answered
        results[label] = result
        print(f"{label:<24} x{clients}: {json.dumps(result)}", flush=True)

    if not args.skip_reference:
        port = _free_port()
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/price-alchemy@champion"]
        cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        proc = _start(cmd, _env(home), logs / "reference.log")
        try:
            print(f"reference ready after {_wait(f'http://127.0.0.1:{port}/ping', proc):.1f}s", flush=True)
            invocations = f"http://127.0.0.1:{port}/invocations"
            measure("reference", invocations, ref_singles, proc, args.concurrency)
            measure(f"reference batch{k}", invocations, ref_batches, proc, 1)
        finally:
            _stop(proc)

    configs = [(w, True) for w in worker_counts] + ([(1, False)] if args.logging_off else [])
    for round_ in range(args.rounds):
        for workers, logging_on in configs:
            proc, api = start_ours(home, workers, logging_on, logs / "ours.log")
            label = f"ours w={workers}{'' if logging_on else ' log=off'} r{round_ + 1}"
            try:
                calls = metric_sum(api, "price_alchemy_model_batch_rows_count")
                rows = metric_sum(api, "price_alchemy_model_batch_rows_sum")
                cpu = group_cpu_seconds(proc.pid)
                measure(label, f"{api}/v1/predict", singles, proc, args.concurrency)
                calls = metric_sum(api, "price_alchemy_model_batch_rows_count") - calls
                rows = metric_sum(api, "price_alchemy_model_batch_rows_sum") - rows
                results[label]["rows_per_call"] = rows / max(calls, 1)  # micro-batching, summed over workers
                results[label]["cpu_ms_per_call"] = (group_cpu_seconds(proc.pid) - cpu) * 1000 / max(calls, 1)
                print(
                    f"  {calls:,.0f} model calls, {results[label]['rows_per_call']:.1f} rows each", flush=True
                )
                if round_ == 0:
                    measure(f"ours w={workers} batch{k}", f"{api}/v1/predict/batch", batches, proc, 1)
            finally:
                _stop(proc)
            if logging_on and url is not None:
                answered = results[label]["answered"] + results.get(f"ours w={workers} batch{k}", {}).get(
                    "answered", 0
                ) * (round_ == 0)
                before = es_count(url)
                ship_once(home, url, logs / "ship.log")
                shipped = es_count(url) - before
                results[label]["shipped"], results[label]["answered_total"] = shipped, answered
                print(f"  shipped {shipped:,} documents for {answered:,} requests answered", flush=True)
    report(results, worker_counts, k, home)


def report(results: dict[str, dict[str, Any]], worker_counts: list[int], k: int, home: Path) -> None:
    def median(prefix: str, key: str) -> float:
        values = [r[key] for label, r in results.items() if label.startswith(prefix) and "batch" not in label]
        return statistics.median(values) if values else float("nan")

    print(
        f"\n{'':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'server cores':>14}"
        f"{'client cores':>14}{'server CPU ms/req':>19}"
    )
    for label, r in results.items():
        print(
            f"{label:<26}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
            f"{r['server_cores']:>14.2f}{r['client_cores']:>14.2f}{r['server_cpu_ms']:>19.2f}"
        )
    ref = results.get("reference", {}).get("rps")
    medians = {
        w: {key: median(f"ours w={w} r", key) for key in ("rps", "p50_ms", "p99_ms")} for w in worker_counts
    }
    for label, r in results.items():
        if "rows_per_call" in r:
            print(
                f"{label}: {r['rows_per_call']:.1f} rows per model call, {r['cpu_ms_per_call']:.1f} ms of server CPU per call"
            )
    for w, m in medians.items():
        versus = f", {m['rps'] / ref:.1f}x the reference" if ref else ""
        print(
            f"ours w={w} (median of rounds): {m['rps']:.1f} req/s, p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms{versus}"
        )
    if len(worker_counts) > 1:
        low, high = worker_counts[0], worker_counts[-1]
        print(f"throughput w={high} / w={low} (medians): {medians[high]['rps'] / medians[low]['rps']:.2f}x")
    for label in (f"reference batch{k}", *(f"ours w={w} batch{k}" for w in worker_counts)):
        if label in results:
            print(f"{label} p50: {results[label]['p50_ms']:.1f} ms")
    checked = [(label, r) for label, r in results.items() if "shipped" in r]
    if checked:
        ok = all(r["shipped"] == r["answered_total"] for _, r in checked)
        print(f"events shipped == requests answered in every run: {ok} ({len(checked)} runs)")
        dead = home / "request-log" / "dead-letter"
        print(
            f"dead letters: {sum(1 for p in dead.glob('*.jsonl') for _ in p.open()) if dead.exists() else 0}"
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
