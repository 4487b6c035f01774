"""Request-event shipping into a local Elasticsearch node: backlogs (small and large events), delay.

1. **Backlog**: ``--events`` (20,000) realistic request events (docs/request-events.md; listings
   from the synthetic generator, 10 % batch requests of 2-10 listings, 3 % failed requests) are
   written to a fresh event log, then ``Shipper.ship_backlog`` delivers them: events/s, and a count
   check (exactly N documents).
2. **Large events**: ``--big-events`` (1,000) events of ``--big-listings``-listing (1,000) batch
   requests (~290 kB each, ~290 MB in all) are written to another home, then
   ``price-alchemy ship --once`` ships them as its own process: MB/s of log shipped, the
   shipper's peak RSS (``wait4``'s ``ru_maxrss``), and the count check. The shipper reads a batch
   within its byte budget (8 MB) before decoding, so its memory does not grow with the events.
3. **Delay**: the shipper runs in follow mode while a writer appends ``--rate`` events/s for
   ``--seconds``; a poller counts the searchable documents every 50 ms. With one shard and the
   shipper's in-order bulks, the searchable documents are always a prefix of the log, so when the
   count moves from a to b, events a..b-1 became searchable then: delay = that time - write time.
   The index's default 1 s refresh interval is part of the delay, as in production.

    .venv/bin/python benchmarks/shipping.py                      # starts a temporary node
    .venv/bin/python benchmarks/shipping.py --url http://127.0.0.1:9200 --events 50000
    .venv/bin/python benchmarks/shipping.py --events 0 --seconds 0 --big-events 1000   # large only
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from price_alchemy.config import Settings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.eventlog import EventLogWriter, log_bytes
from price_alchemy.monitoring.elastic import connect
from price_alchemy.monitoring.shipping import Shipper
from price_alchemy.monitoring.sinks import ElasticsearchSink
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.serving.model_store import ModelMetadata
from price_alchemy.serving.request_log import RequestContext, build_event

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "elasticsearch.py"
INDICES = "price-alchemy-requests-*"


class EventFactory:
    """Request events made by the API's own builder (``serving.request_log.build_event``)."""

    MODEL = ModelMetadata("price-alchemy", "7", "champion", None, None, None, None)

    def __init__(self, seed: int = 0) -> None:
        frame = generate_listings(5000, seed=seed)
        self.rows = frame[list(FEATURE_COLUMNS)].astype(object).where(frame.notna(), None).to_dict("records")
        self.prices = frame["price"].to_numpy()
        self.rng = np.random.default_rng(seed)

    def batch_event(self, listings: int, when: datetime | None = None) -> dict[str, Any]:
        """The event of one successful batch request of ``listings`` listings."""
        ctx = RequestContext(received_at=when or datetime.now(UTC))
        picked = self.rng.integers(len(self.rows), size=listings)
        prices = np.round(self.prices[picked], 2)
        ctx.batch_size = listings
        ctx.listings, ctx.prices, ctx.model = [self.rows[i] for i in picked], prices, self.MODEL
        ctx.lows, ctx.highs = np.round(prices * 0.6, 2), np.round(prices * 1.6, 2)
        duration_ns = int(self.rng.lognormal(5.0, 0.3) * 1e6)
        return build_event(
            ctx,
            route="predict_batch",
            path="/v1/predict/batch",
            method="POST",
            status=200,
            duration_ns=duration_ns,
        )

    def event(self, when: datetime | None = None) -> dict[str, Any]:
        roll = self.rng.random()
        failed, batch = roll < 0.03, roll > 0.90
        ctx = RequestContext(received_at=when or datetime.now(UTC))
        if failed:
            ctx.fail("RequestValidationError", "item_condition_id: Input should be less than or equal to 5")
        else:
            picked = self.rng.integers(len(self.rows), size=int(self.rng.integers(2, 11)) if batch else 1)
            prices = np.round(self.prices[picked], 2)
            ctx.batch_size = len(picked)
            ctx.listings, ctx.prices, ctx.model = [self.rows[i] for i in picked], prices, self.MODEL
            ctx.lows, ctx.highs = np.round(prices * 0.6, 2), np.round(prices * 1.6, 2)
        route = "predict_batch" if batch else "predict"
        return build_event(
            ctx,
            route=route,
            path="/v1/predict/batch" if batch else "/v1/predict",
            method="POST",
            status=422 if failed else 200,
            duration_ns=int(self.rng.lognormal(2.5, 0.5) * 1e6),
        )


def start_node(base: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "start", "--port", str(port), "--data-dir", str(base / "node")],
        stdout=(base / "console.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    while time.monotonic() - started < 300:
        try:
            urllib.request.urlopen(f"{url}/_cluster/health", timeout=2).close()
            return proc, url, time.monotonic() - started
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"node exited: {(base / 'console.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    raise SystemExit("node did not start within 300 s")


def wipe(client: Any) -> None:
    names = [n for n in client.indices.get(index=INDICES) if not n.startswith(".")]
    if names:
        client.indices.delete(index=",".join(names))


def backlog(settings: Settings, factory: EventFactory, n: int, batch_size: int) -> None:
    started = time.perf_counter()
    with EventLogWriter(settings.request_log_dir) as writer:
        for _ in range(n):
            writer.append(factory.event())
    write_s = time.perf_counter() - started
    size_mb = log_bytes(settings.request_log_dir) / 1e6
    sink = ElasticsearchSink(connect(settings, max_retries=0, request_timeout=60))
    with Shipper(settings.request_log_dir, sink, batch_size=batch_size) as shipper:
        started = time.perf_counter()
        stats = shipper.ship_backlog()
        ship_s = time.perf_counter() - started
    client = connect(settings)
    client.indices.refresh(index=INDICES)
    count = client.count(index=INDICES)["count"]
    print(f"backlog: {n:,} events ({size_mb:.1f} MB of log, written in {write_s:.1f}s)")
    print(
        f"  shipped in {ship_s:.1f}s = {n / ship_s:,.0f} events/s (batch {batch_size}), "
        f"delivered {stats.delivered:,}, duplicates {stats.duplicates}, dead letters {stats.dead_lettered}"
    )
    print(f"  documents in Elasticsearch: {count:,} ({'exactly N' if count == n else 'MISMATCH'})")
    client.close()


def high_water_kb(pid: int) -> int:
    """``VmHWM`` of a running process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def big_backlog(settings: Settings, factory: EventFactory, n: int, listings: int) -> None:
    """Events of large batch requests, shipped by ``price-alchemy ship --once`` in its own process."""
    started = time.perf_counter()
    with EventLogWriter(settings.request_log_dir, settings.request_log_segment_bytes) as writer:
        for _ in range(n):
            writer.append(factory.batch_event(listings))
    write_s = time.perf_counter() - started
    size_mb = log_bytes(settings.request_log_dir) / 1e6
    print(
        f"large events: {n:,} events of {listings:,}-listing batch requests, {size_mb:.0f} MB of log "
        f"({size_mb / n * 1000:.0f} kB each), written in {write_s:.0f}s",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))}
    env.update(
        PRICE_ALCHEMY_HOME=str(settings.home), PRICE_ALCHEMY_ELASTICSEARCH_URL=str(settings.elasticsearch_url)
    )
    cli = Path(sys.executable).parent / "price-alchemy"
    log = settings.home / "ship.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(cli), "ship", "--once"], env=env, stdout=out, stderr=subprocess.STDOUT)
        peak_kb = 0
        while proc.poll() is None:  # the exec'd image's own high-water mark (ru_maxrss would
            peak_kb = max(peak_kb, high_water_kb(proc.pid))  # also count this process, forked)
            time.sleep(0.05)
    ship_s = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("shipped ")]
    client = connect(settings)
    client.indices.refresh(index=INDICES)
    count = client.count(index=INDICES)["count"]
    client.close()
    print(
        f"  price-alchemy ship --once: exit {proc.returncode} in {ship_s:.1f}s = {size_mb / ship_s:.1f} MB/s "
        f"({n / ship_s:.1f} events/s), peak RSS {peak_kb / 1024:.0f} MB, "
        f"CPU {usage.ru_utime + usage.ru_stime - cpu_before:.1f}s"
    )
    print(f"  {summary[-1] if summary else '(no summary line)'}")
    print(
        f"  documents in Elasticsearch: {count:,} ({'exactly N' if count == n else 'MISMATCH'})", flush=True
    )


def delay(settings: Settings, factory: EventFactory, rate: float, seconds: float) -> None:
    client = connect(settings)
    wipe(client)
    written: list[float] = []
    seen: list[float] = []
    stop = threading.Event()
    sink = ElasticsearchSink(connect(settings, max_retries=0, request_timeout=60))
    shipper = Shipper(settings.request_log_dir, sink)
    follower = threading.Thread(target=shipper.follow, args=(stop,), daemon=True)
    follower.start()

    def poll() -> None:
        while not stop.is_set():
            try:
                count = client.count(index=INDICES, allow_no_indices=True)["count"]
            except Exception:  # the first index may not exist yet
                count = 0
            now = time.perf_counter()
            seen.extend([now] * (count - len(seen)))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    total = int(rate * seconds)
    started = time.perf_counter()
    with EventLogWriter(settings.request_log_dir) as writer:
        for i in range(total):
            target = started + i / rate
            pause = target - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            event = factory.event()
            written.append(time.perf_counter())
            writer.append(event)
    deadline = time.perf_counter() + 60
    while len(seen) < total and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    follower.join(timeout=30)
    poller.join(timeout=5)
    shipper.close()
    delays = np.array(seen[:total]) - np.array(written[: len(seen[:total])])
    achieved = total / (written[-1] - written[0]) if total > 1 else 0.0
    print(
        f"follow: {total:,} events written at {achieved:.0f}/s for {seconds:.0f}s; {len(seen):,} searchable"
    )
    print(
        f"  delay write -> searchable: p50 {np.percentile(delays, 50) * 1000:.0f} ms, "
        f"p99 {np.percentile(delays, 99) * 1000:.0f} ms, max {delays.max() * 1000:.0f} ms "
        f"(shipper poll 200 ms, index refresh 1 s, count poll 50 ms)"
    )
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", help="an Elasticsearch to use (default: start a temporary node)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--big-events", type=int, default=1000, help="large-event backlog (0: skip)")
    parser.add_argument("--big-listings", type=int, default=1000, help="listings per large event")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="price-alchemy-bench-"))
    base.chmod(0o755)  # as root the node runs as `nobody`
    proc = None
    try:
        url = args.url
        if url is None:
            proc, url, start_s = start_node(base)
            print(f"node: {url}, answered after {start_s:.1f}s")
        factory = EventFactory()
        settings = Settings(_env_file=None, home=base / "home1", elasticsearch_url=url)
        client = connect(settings)
        wipe(client)
        if args.events:
            backlog(settings, factory, args.events, args.batch_size)
            wipe(client)
        if args.big_events:
            settings = Settings(_env_file=None, home=base / "home3", elasticsearch_url=url)
            big_backlog(settings, factory, args.big_events, args.big_listings)
            wipe(client)
        if args.seconds:
            settings = Settings(_env_file=None, home=base / "home2", elasticsearch_url=url)
            delay(settings, factory, args.rate, args.seconds)
            wipe(client)
    finally:
        if proc is not None:  # the whole process group: launcher and server JVM
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
            for _ in range(150):
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
