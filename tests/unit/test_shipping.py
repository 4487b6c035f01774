"""The shipper's pure parts and its commit/retry/dead-letter rules, against an in-memory sink."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from price_alchemy.eventlog import EventLogReader, EventLogWriter
from price_alchemy.monitoring.shipping import Backoff, Shipper, ShippingError
from price_alchemy.monitoring.sinks import (
    InvalidEventError,
    ItemResult,
    TransientError,
    bulk_operations,
    classify_item,
    index_name,
)

pytestmark = [pytest.mark.unit]


def event(i: int, ts: str = "2024-05-01T10:00:00.000Z") -> dict[str, Any]:
    return {"@timestamp": ts, "event": {"id": f"r{i}"}, "price_alchemy": {"latency_ms": 1.0}}


@pytest.mark.parametrize(
    ("ts", "index"),
    [
        ("2024-05-01T23:59:59.999Z", "price-alchemy-requests-2024.05.01"),
        ("2024-05-02T00:30:00+02:00", "price-alchemy-requests-2024.05.01"),  # UTC day, not local
        ("2024-12-31T10:00:00", "price-alchemy-requests-2024.12.31"),  # naive: taken as UTC
    ],
)
def test_index_name_is_the_utc_day_of_the_timestamp(ts: str, index: str) -> None:
    assert index_name({"@timestamp": ts}) == index


@pytest.mark.parametrize("bad", [{}, {"@timestamp": 5}, {"@timestamp": "yesterday"}])
def test_index_name_refuses_events_without_a_usable_timestamp(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError):
        index_name(bad)


def test_backoff_doubles_up_to_the_cap_and_jitters_below_the_base() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, cap_s=5.0, jitter=0.5)
    assert [backoff.base(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    rng = random.Random(1)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # really random, so shippers do not retry in lockstep


def test_bulk_operations_create_each_event_under_its_request_id() -> None:
    ops = bulk_operations([event(1), event(2, "2024-05-02T00:00:00Z")])
    assert ops == [
        {"create": {"_index": "price-alchemy-requests-2024.05.01", "_id": "r1"}},
        event(1),
        {"create": {"_index": "price-alchemy-requests-2024.05.02", "_id": "r2"}},
        event(2, "2024-05-02T00:00:00Z"),
    ]
    with pytest.raises(InvalidEventError, match=r"no event\.id"):
        bulk_operations([{"@timestamp": "2024-05-01T00:00:00Z", "event": {"id": " "}}])


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, "delivered"),
        (409, "duplicate"),
        (400, "rejected"),
        (429, "retry"),
        (503, "retry"),
        (403, "retry"),
    ],
)
def test_bulk_items_are_classified_by_status(status: int, outcome: str) -> None:
    item = {"create": {"status": status, "error": {"type": "x_exception", "reason": "why"}}}
    result = classify_item(item)
    assert result.outcome == outcome
    assert result.status == status


class FakeSink:
    """Records what it was sent; scripted failures: whole-batch outages and per-item answers."""

    name = "fake"

    def __init__(self, outages: int = 0, answers: list[list[str]] | None = None) -> None:
        self.outages = outages
        self.answers = answers or []
        self.sent: list[list[str]] = []
        self.received: list[str] = []

    def prepare(self) -> None:
        if self.outages:
            self.outages -= 1
            raise TransientError("connection refused")

    def send(self, events: list[dict[str, Any]]) -> list[ItemResult]:
        ids = [e["event"]["id"] for e in events]
        self.sent.append(ids)
        outcomes = self.answers.pop(0) if self.answers else ["delivered"] * len(events)
        results = [ItemResult(o, 400 if o == "rejected" else 201, o) for o in outcomes]  # type: ignore[arg-type]
        self.received += [i for i, r in zip(ids, results, strict=True) if r.outcome == "delivered"]
        return results

    def close(self) -> None:
        pass


FAST = Backoff(initial_s=0.001, cap_s=0.002)


def write(log_dir: Path, n: int) -> None:
    with EventLogWriter(log_dir) as writer:
        for i in range(n):
            writer.append(event(i))


def test_batches_are_sent_in_log_order_and_committed(tmp_path: Path) -> None:
    write(tmp_path, 7)
    sink = FakeSink()
    with Shipper(tmp_path, sink, batch_size=3, backoff=FAST) as shipper:
        stats = shipper.ship_backlog()
    assert sink.sent == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]
    assert (stats.delivered, stats.batches) == (7, 3)
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0


def test_batches_are_cut_to_the_byte_budget_but_never_empty(tmp_path: Path) -> None:
    write(tmp_path, 5)
    size = len((tmp_path / "events-000000000001.jsonl").read_bytes().splitlines()[0])
    sink = FakeSink()
    with Shipper(tmp_path, sink, batch_size=100, max_batch_bytes=2 * size, backoff=FAST) as shipper:
        shipper.ship_backlog()
    assert sink.sent == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    sink = FakeSink()
    write(tmp_path, 1)
    with Shipper(tmp_path, sink, max_batch_bytes=1, backoff=FAST) as shipper:
        assert shipper.ship_backlog().delivered == 1  # one event larger than the budget still goes


def test_an_outage_is_retried_and_only_then_committed(tmp_path: Path) -> None:
    write(tmp_path, 2)
    sink = FakeSink(outages=3)
    with Shipper(tmp_path, sink, backoff=FAST) as shipper:
        stats = shipper.ship_backlog()
    assert stats.retries == 3
    assert sink.received == ["r0", "r1"]


def test_only_the_refused_items_are_resent(tmp_path: Path) -> None:
    write(tmp_path, 3)
    sink = FakeSink(answers=[["delivered", "retry", "duplicate"], ["delivered"]])
    with Shipper(tmp_path, sink, backoff=FAST) as shipper:
        stats = shipper.ship_backlog()
    assert sink.sent == [["r0", "r1", "r2"], ["r1"]]
    assert (stats.delivered, stats.duplicates) == (2, 1)


def test_rejected_and_undecodable_events_are_dead_lettered_in_log_order(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        writer.append(event(0))
        writer.append_line(b"[1, 2]\n")
        writer.append(event(1))
        writer.append({"@timestamp": "2024-05-01T00:00:00Z"})
    sink = FakeSink(answers=[["delivered", "rejected"]])
    with Shipper(tmp_path, sink, backoff=FAST) as shipper:
        stats = shipper.ship_backlog()
    assert (stats.delivered, stats.dead_lettered) == (1, 3)
    dead = [json.loads(line) for line in next((tmp_path / "dead-letter").glob("*.jsonl")).open()]
    assert [d["reason"] for d in dead] == ["not a JSON object", "rejected", "no event.id"]
    assert dead[0]["raw"] == "[1, 2]"
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0


def test_once_gives_up_without_committing(tmp_path: Path) -> None:
    write(tmp_path, 2)
    shipper = Shipper(tmp_path, FakeSink(outages=10**6), backoff=FAST)
    with shipper, pytest.raises(ShippingError, match="fake unreachable"):
        shipper.ship_backlog(give_up_after_s=0.05)
    assert EventLogReader(tmp_path, "shipper").pending_bytes() > 0


def test_stopping_during_an_outage_commits_nothing(tmp_path: Path) -> None:
    write(tmp_path, 2)
    stop = threading.Event()
    sink = FakeSink(outages=10**6)
    with Shipper(tmp_path, sink, backoff=Backoff(initial_s=0.01, cap_s=0.01)) as shipper:
        shipper.on_progress = lambda stats: stop.set() if stats.retries >= 2 else None
        shipper.follow(stop)
    assert not (tmp_path / "shipper.checkpoint").exists()


def test_a_second_shipper_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    with Shipper(tmp_path, FakeSink()), pytest.raises(ShippingError, match="another shipper"):
        Shipper(tmp_path, FakeSink())


class _LogstashStub:
    """A local HTTP endpoint standing in for the Logstash http input: records bodies, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        import http.server

        stub = self
        self.status = status
        self.bodies: list[tuple[str, bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.bodies.append((self.headers["Content-Type"], body))
                self.send_response(stub.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_logstash_mode_posts_ndjson_and_commits_only_after_a_200(tmp_path: Path) -> None:
    from price_alchemy.monitoring.sinks import LogstashSink

    write(tmp_path, 3)
    stub = _LogstashStub(status=503)
    try:
        shipper = Shipper(tmp_path, LogstashSink(stub.url), backoff=FAST)
        with shipper, pytest.raises(ShippingError, match="logstash unreachable"):
            shipper.ship_backlog(give_up_after_s=0.05)
        assert EventLogReader(tmp_path, "shipper").pending_bytes() > 0  # 503: nothing committed
        stub.status = 200
        with Shipper(tmp_path, LogstashSink(stub.url), backoff=FAST) as shipper:
            assert shipper.ship_backlog().delivered == 3
    finally:
        stub.close()
    content_type, body = stub.bodies[-1]
    assert content_type == "application/x-ndjson"
    assert [json.loads(line)["event"]["id"] for line in body.decode().splitlines()] == ["r0", "r1", "r2"]
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0
