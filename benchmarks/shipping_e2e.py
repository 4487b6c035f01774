"""Request -> searchable in Elasticsearch, end to end, under the serving benchmark's load.

    .venv/bin/python benchmarks/shipping_e2e.py [--duration 30] [--home HOME_WITH_A_CHAMPION]

Starts a temporary Elasticsearch node (``benchmarks/shipping.py``'s ``start_node``), trains a
TF-IDF + Ridge champion on the real 5k sample into a temporary home (``benchmarks/serving.py``'s
``train``; or takes ``--home``), starts ``price-alchemy serve`` with request logging on, and drives
it with the serving benchmark's load (its separate asyncio client process: ``--concurrency`` 8
closed-loop clients, single listings). One server process throughout, phases in this order:

1. warm-up (``--warmup`` s), shipped with ``price-alchemy ship --once`` (this creates the index);
   from here a poller searches the request index every ``--poll-ms`` (50) ms for the visible
   document count and highest ``_seq_no``, through every phase (its cost is in all three loads);
2. **baseline A** (``--duration`` s, no shipper running), then ``ship --once`` ships that backlog;
3. ``price-alchemy ship --follow`` starts; a probe request shows the idle pipeline's delay;
4. **shipping run** (``--duration`` s) while the shipper follows, then until every request
   answered is searchable (the backlog drained);
5. the shipper is stopped (SIGTERM), then **baseline B** (``--duration`` s, no shipper), then a
   final ``ship --once`` and the check: documents == requests answered (load client + probe),
   also against the API's own ``price_alchemy_http_requests_total``, no dead letters (documents
   cannot be duplicated: ``_id`` = ``event.id``).

Delays: the index has one shard and the shipper sends one bulk at a time in log order, so the
searchable documents are always the first ``count`` of the log, and in ``_seq_no`` order (each
poll checks this: the highest visible ``_seq_no`` must be that of the ``count``-th document).
Afterwards every document's ``@timestamp`` (request arrival, ms) is read back sorted by
``_seq_no``; the document of rank r became searchable at the first poll with count > r, so
delay = that poll's answer time - ``@timestamp`` (an upper bound, within one poll interval). The
index keeps the default 1 s refresh interval, as in production; the polls keep the shard from
going search-idle. Baselines A and B bracket the shipping run on the shared machine: the shipper's
overhead is the shipping run's req/s against their mean. CPU per phase (cores: CPU seconds / wall
seconds) of the server, the shipper, the Elasticsearch node (process groups, from ``/proc``), the
poller (this process) and the load client tells where the shared cores went. Every process started
here is stopped by process group at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from price_alchemy.config import Settings
from price_alchemy.eventlog import EventLogReader
from price_alchemy.monitoring.elastic import connect

HERE = Path(__file__).resolve().parent


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serving = _module(HERE / "serving.py", "bench_serving")
shipping = _module(HERE / "shipping.py", "bench_shipping")
es_script = _module(HERE.parent / "scripts" / "elasticsearch.py", "es_script")
INDICES: str = shipping.INDICES
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


def cpu_snapshot(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: each process group, this process (the poller) and its reaped children
    (the load client, once ``run_load`` returned), and the wall clock."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    snap = {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}
    snap["poller"] = own.ru_utime + own.ru_stime
    snap["load client"] = children.ru_utime + children.ru_stime
    snap["wall"] = time.monotonic()
    return snap


def uptime(label: str) -> None:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"uptime ({label}): {out}", flush=True)


class Poller(threading.Thread):
    """Searches the request indices every ``interval`` s: (answer wall time, count, highest _seq_no)."""

    def __init__(self, client: Any, interval: float) -> None:
        super().__init__(daemon=True)
        self.client, self.interval = client, interval
        self.samples: list[tuple[float, int, int]] = []
        self.failures = 0
        self.stop = threading.Event()

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                answer = self.client.search(
                    index=INDICES,
                    size=1,
                    sort=[{"_seq_no": "desc"}],
                    source=False,
                    seq_no_primary_term=True,
                    track_total_hits=True,
                    allow_no_indices=True,
                    ignore_unavailable=True,
                )
                hits = answer["hits"]["hits"]
                top = int(hits[0]["_seq_no"]) if hits else -1
                self.samples.append((time.time(), int(answer["hits"]["total"]["value"]), top))
            except Exception:
                self.failures += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - self.interval)  # a slow answer skips ticks

    def wait_for(self, count: int, timeout: float) -> float | None:
        """Wall time of the first sample with at least ``count`` documents (None on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][1] >= count:
                return next(t for t, seen, _ in self.samples if seen >= count)
            time.sleep(0.05)
        return None


def documents(client: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every request document: its indices, and (_seq_no, @timestamp in s) sorted by _seq_no."""
    client.indices.refresh(index=INDICES)
    indices = sorted(client.indices.get(index=INDICES))
    seqs: list[int] = []
    stamps: list[float] = []
    after = None
    while True:
        answer = client.search(
            index=INDICES,
            size=5000,
            sort=[{"_seq_no": "asc"}],
            source=False,
            seq_no_primary_term=True,
            docvalue_fields=[{"field": "@timestamp", "format": "epoch_millis"}],
            track_total_hits=False,
            search_after=after,
        )
        hits = answer["hits"]["hits"]
        if not hits:
            break
        for hit in hits:
            seqs.append(int(hit["_seq_no"]))
            stamps.append(float(hit["fields"]["@timestamp"][0]) / 1000)
        after = hits[-1]["sort"]
    return indices, np.array(seqs), np.array(stamps)


def api_request_count(base_url: str) -> int:
    """Prediction requests the API counted (``price_alchemy_http_requests_total``, route predict)."""
    text = urllib.request.urlopen(f"{base_url}/metrics", timeout=10).read().decode()
    pattern = re.compile(
        r'^price_alchemy_http_requests_total\{[^}]*route="/v1/predict"[^}]*\}\s+(\S+)$', re.M
    )
    return int(sum(float(v) for v in pattern.findall(text)))


def ship_once(env: dict[str, str], log: Path) -> tuple[float, str]:
    started = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run(
            [str(serving.BIN / "price-alchemy"), "ship", "--once"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            start_new_session=True,
            timeout=600,
        )
    return time.perf_counter() - started, summary(log)


def summary(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("shipped ")]
    return lines[-1] if lines else "(no summary line)"


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if len(values) else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="PRICE_ALCHEMY_HOME with a champion (default: train one)")
    parser.add_argument(
        "--url", help="an Elasticsearch without request documents (default: a temporary node)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of each measured load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll-ms", type=float, default=50.0)
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    args = parser.parse_args()

    uptime("start")
    base = Path(tempfile.mkdtemp(prefix="pa-ship-e2e-"))
    base.chmod(0o755)  # as root the node runs as `nobody`
    procs: list[Any] = []  # every process group started here, stopped in `finally`
    node = None
    try:
        url = args.url
        if url is None:
            node, url, start_s = shipping.start_node(base)
            print(f"node: {url}, answered after {start_s:.1f}s", flush=True)
        client = connect(Settings(_env_file=None, home=base, elasticsearch_url=url))
        if client.count(index=INDICES, allow_no_indices=True)["count"]:
            raise SystemExit(f"{url} already holds request documents ({INDICES}); use an empty node")

        home = args.home or base / "home"
        if args.home is None:
            started = time.monotonic()
            version = serving.train(home, "ridge")
            print(f"trained ridge v{version} in {time.monotonic() - started:.0f}s", flush=True)
        elif EventLogReader(home / "request-log").pending_bytes():
            raise SystemExit(f"{home}/request-log holds unshipped events: counts would not match")
        logs = base / "logs"
        logs.mkdir()
        env = serving._env(
            home,
            PRICE_ALCHEMY_ELASTICSEARCH_URL=url,
            PRICE_ALCHEMY_REQUEST_LOG_ENABLED="true",
            COLUMNS="200",  # the shipper's summary line on one line
        )
        bodies = [json.dumps(r) for r in serving.sample_listings()]

        port = serving._free_port()
        api = f"http://127.0.0.1:{port}"
        server = serving._start(
            [str(serving.BIN / "price-alchemy"), "serve", "--port", str(port)], env, logs / "serve.log"
        )
        procs.append(server)
        print(f"server ready after {serving._wait(f'{api}/health/ready', server):.1f}s", flush=True)
        answered = 0  # every request the load client sent got an answer (warm-up 0: all counted)
        groups = {"server": server.pid, "shipper": -1}  # process groups, -1: not running
        if node is not None:  # an outside node's CPU is not measured
            groups["elasticsearch"] = node.pid
        results: dict[str, dict[str, Any]] = {}
        cpu: dict[str, dict[str, float]] = {}

        def load(key: str, label: str, seconds: float) -> dict[str, Any]:
            nonlocal answered
            before = cpu_snapshot(groups)
            result = serving.run_load(f"{api}/v1/predict", bodies, args.concurrency, seconds, 0.0)
            after = cpu_snapshot(groups)
            answered += result["requests"]
            results[key] = result
            cpu[key] = {k: (after[k] - before[k]) / (after["wall"] - before["wall"]) for k in before}
            print(f"{label:<26} {json.dumps(result)}", flush=True)
            return result

        load("warm-up", "warm-up (no shipper)", args.warmup)
        seconds, line = ship_once(env, logs / "ship-once.log")  # creates the index: baseline A searches it
        poller = Poller(client, args.poll_ms / 1000)
        poller.start()
        if poller.wait_for(answered, 30) is None:
            raise SystemExit(f"{poller.latest()} documents after ship --once, {answered} requests answered")

        load("A", "baseline A (no shipper)", args.duration)
        backlog = answered - poller.latest()
        seconds, line = ship_once(env, logs / "ship-once.log")
        print(f"ship --once: {backlog:,} buffered events in {seconds:.1f}s (process start included): {line}")

        shipper = serving._start(
            [str(serving.BIN / "price-alchemy"), "ship", "--follow"], env, logs / "follow.log"
        )
        procs.append(shipper)
        groups["shipper"] = shipper.pid
        time.sleep(3)  # the follower's start-up (imports) is not part of a request's delay
        if poller.wait_for(answered, 30) is None or poller.latest() != answered:
            raise SystemExit(f"{poller.latest()} documents after ship --once, {answered} requests answered")
        t_probe = time.time()
        probe = urllib.request.Request(f"{api}/v1/predict", data=bodies[0].encode(), method="POST")
        probe.add_header("Content-Type", "application/json")
        urllib.request.urlopen(probe, timeout=10).close()
        answered += 1
        t_seen = poller.wait_for(answered, 60)
        if t_seen is None:
            raise SystemExit("the probe request never became searchable")
        print(f"probe on an idle pipeline: searchable after {(t_seen - t_probe) * 1000:.0f} ms", flush=True)

        base_count = answered
        before = cpu_snapshot(groups)
        t_load0 = time.time()
        load("S", "shipping run (follow)", args.duration)
        t_load1 = time.time()
        count_at_end = poller.latest()
        t_drained = poller.wait_for(answered, args.drain_timeout)
        after = cpu_snapshot(groups)
        cpu["S+drain"] = {k: (after[k] - before[k]) / (after["wall"] - before["wall"]) for k in before}
        serving._stop(shipper)
        procs.remove(shipper)
        groups["shipper"] = -1
        print(f"ship --follow stopped: {summary(logs / 'follow.log')}", flush=True)
        if t_drained is None:
            raise SystemExit(f"not drained after {args.drain_timeout:.0f}s: {poller.latest()} of {answered}")
        shipped_answered = answered

        load("B", "baseline B (no shipper)", args.duration)
        poller.stop.set()
        poller.join(timeout=10)
        seconds, line = ship_once(env, logs / "ship-once.log")
        print(f"final ship --once in {seconds:.1f}s: {line}", flush=True)
        api_count = api_request_count(api)
        serving._stop(server)
        procs.remove(server)

        indices, seqs, stamps = documents(client)
        dead = list((home / "request-log" / "dead-letter").glob("events-*.jsonl"))
        dead_lines = sum(len(p.read_bytes().splitlines()) for p in dead)

        # --- delays: the document of rank r (by _seq_no) is first visible at the first poll with count > r
        times = np.array([s[0] for s in poller.samples])
        raw = np.array([s[1] for s in poller.samples])
        tops = np.array([s[2] for s in poller.samples])
        counts = np.maximum.accumulate(raw)
        ranks = np.arange(base_count, shipped_answered)
        delays = times[np.searchsorted(counts, ranks, side="right")] - stamps[ranks]
        seen = (raw > 0) & (raw <= len(seqs))
        not_prefix = int(np.sum(seqs[raw[seen] - 1] != tops[seen])) + int(np.sum(raw > len(seqs)))
        lag = np.diff(times)

        mean_base = (results["A"]["rps"] + results["B"]["rps"]) / 2
        shipped = shipped_answered - base_count
        print()
        names = " / ".join(k for k in cpu["A"] if k != "wall")
        print(f"{'':<26}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}   CPU cores: {names}")
        for key, label in (
            ("A", "baseline A (no shipper)"),
            ("S", "shipper following"),
            ("B", "baseline B (no shipper)"),
        ):
            r = results[key]
            cores = " / ".join(f"{v:.2f}" for k, v in cpu[key].items() if k != "wall")
            print(
                f"{label:<26}{r['rps']:>8.1f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['errors']:>7}   {cores}"
            )
        cores = " / ".join(f"{v:.2f}" for k, v in cpu["S+drain"].items() if k != "wall")
        print(f"{'  (load + drain)':<60}{cores}")
        print(
            f"shipper overhead: {results['S']['rps'] / mean_base - 1:+.1%} req/s against the baselines' mean"
        )
        print(
            f"shipped: {shipped:,} events of the shipping run; searchable during the load "
            f"{(count_at_end - base_count) / (t_load1 - t_load0):.1f}/s, load start -> drained "
            f"{shipped / (t_drained - t_load0):.1f}/s; drained {(t_drained - t_load1) * 1000:.0f} ms after the load"
        )
        print(
            f"delay request arrival -> searchable ({len(delays):,} requests): p50 {pct(delays, 50):.0f} ms, "
            f"p90 {pct(delays, 90):.0f} ms, p99 {pct(delays, 99):.0f} ms, max {delays.max() * 1000:.0f} ms, "
            f"min {delays.min() * 1000:.0f} ms"
        )
        print(
            f"polls: {len(times):,}, interval p50 {np.median(lag) * 1000:.0f} ms / max {lag.max() * 1000:.0f} ms, "
            f"{poller.failures} failed; prefix check (visible = first count by _seq_no): "
            f"{'ok' if not not_prefix else f'{not_prefix} polls VIOLATE it'}"
        )
        unique = len(np.unique(seqs))
        ok = len(seqs) == answered == api_count and unique == len(seqs) and not dead_lines
        print(
            f"check: {len(seqs):,} documents in {', '.join(indices)}; {answered:,} requests answered "
            f"(load client + probe), API counter {api_count:,}; dead letters {dead_lines}: "
            f"{'OK, none lost, none duplicated' if ok else 'MISMATCH'}"
        )
        if len(indices) > 1:
            print("warning: the run crossed a UTC day: two indices, the _seq_no order is per index")
        return 0 if ok and not not_prefix else 1
    finally:
        for proc in procs:
            serving._stop(proc)
        if node is not None:
            es_script.stop_group(node.pid)
            node.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
        uptime("end")


if __name__ == "__main__":
    raise SystemExit(main())
