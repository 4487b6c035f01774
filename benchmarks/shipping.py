"""Request-event shipping into a local Elasticsearch node: backlog throughput and end-to-end delay.

1. **Backlog**: ``--events`` (20,000) realistic request events (docs/request-events.md; listings
   from the synthetic generator, 10 % batch requests of 2-10 listings, 3 % failed requests) are
   written to a fresh event log, then ``Shipper.ship_backlog`` delivers them: events/s, and a count
   check (exactly N documents).
2. **Delay**: the shipper runs in follow mode while a writer appends ``--rate`` events/s for
   ``--seconds``; a poller counts the searchable documents every 50 ms. With one shard and the
   shipper's in-order bulks, the searchable documents are always a prefix of the log, so when the
   count moves from a to b, events a..b-1 became searchable then: delay = that time - write time.
   The index's default 1 s refresh interval is part of the delay, as in production.

    .venv/bin/python benchmarks/shipping.py                      # starts a temporary node
    .venv/bin/python benchmarks/shipping.py --url http://127.0.0.1:9200 --events 50000
"""

from __future__ import annotations

import argparse
import os
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
from price_alchemy.eventlog import EventLogWriter
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
    size_mb = sum(p.stat().st_size for p in settings.request_log_dir.glob("events-*.jsonl")) / 1e6
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
        settings = Settings(_env_file=None, home=base / "home1", elasticsearch_url=url)  # type: ignore[call-arg]
        client = connect(settings)
        wipe(client)
        backlog(settings, factory, args.events, args.batch_size)
        settings = Settings(_env_file=None, home=base / "home2", elasticsearch_url=url)  # type: ignore[call-arg]
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
