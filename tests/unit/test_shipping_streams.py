"""The shipper with several writer streams, a byte budget, oversized events and crashed writers."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from test_shipping import FAST, FakeSink, event

from price_alchemy.eventlog import EventLogReader, EventLogWriter, list_segments
from price_alchemy.monitoring.shipping import Shipper

pytestmark = [pytest.mark.unit]


def big_event(i: int, size: int) -> dict[str, Any]:
    return {**event(i), "pad": "x" * size}


class SizeSink(FakeSink):
    """Also records how many bytes of events each bulk carried."""

    def __init__(self) -> None:
        super().__init__()
        self.bulk_bytes: list[int] = []

    def send(self, events: list[dict[str, Any]]) -> list[Any]:
        self.bulk_bytes.append(sum(len(json.dumps(e)) for e in events))
        return super().send(events)


def test_every_stream_is_shipped_once_and_committed_on_its_own(tmp_path: Path) -> None:
    first, second = EventLogWriter(tmp_path, segment_bytes=500), EventLogWriter(tmp_path, segment_bytes=500)
    for i in range(30):
        (first if i % 3 else second).append(event(i))
    sink = FakeSink()
    with Shipper(tmp_path, sink, batch_size=7, backoff=FAST) as shipper:
        assert shipper.ship_backlog().delivered == 30
        for i in range(30, 40):  # both writers still running: their current segments stay
            (first if i % 2 else second).append(event(i))
        assert shipper.ship_backlog().delivered == 40
    assert sorted(sink.received) == sorted(f"r{i}" for i in range(40))
    assert len(sink.received) == 40
    assert list_segments(tmp_path)[-1][0] == first.seq and list_segments(tmp_path, "w1")[-1][0] == second.seq
    assert {p.name for p in tmp_path.glob("shipper*.checkpoint")} == {
        "shipper.checkpoint",
        "shipper.w1.checkpoint",
    }
    first.close()
    second.close()
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0


def test_memory_is_bounded_by_the_byte_budget_before_decoding(tmp_path: Path) -> None:
    """Today's shipper read and decoded 1,000 events before cutting the batch to its budget."""
    with EventLogWriter(tmp_path, segment_bytes=400_000_000) as writer:
        for i in range(60):
            writer.append(big_event(i, 1_000_000))  # 60 MB of 1 MB events
    sink = SizeSink()
    with Shipper(tmp_path, sink, max_batch_bytes=3_000_000, backoff=FAST) as shipper:
        tracemalloc.start()
        stats = shipper.ship_backlog()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert stats.delivered == 60 and max(sink.bulk_bytes) <= 3_000_000
    assert peak < 25_000_000, f"peak {peak / 1e6:.0f} MB for a 3 MB budget"


def test_an_event_larger_than_the_limit_is_dead_lettered_whole_not_looped_on(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_bytes=400_000_000) as writer:
        writer.append(event(0))
        writer.append(big_event(1, 50_000_000))
        writer.append(event(2))
    original = list_segments(tmp_path)[-1][1].read_bytes().splitlines()[1]
    sink = FakeSink()
    with Shipper(tmp_path, sink, max_batch_bytes=1_000_000, backoff=FAST) as shipper:  # events up to 8 MB
        tracemalloc.start()
        stats = shipper.ship_backlog()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        batches = stats.batches
        assert shipper.ship_backlog().batches == batches  # nothing left, nothing re-read
    assert sink.received == ["r0", "r2"] and stats.dead_lettered == 1
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB for a 50 MB event"
    (letter,) = [json.loads(line) for line in next((tmp_path / "dead-letter").glob("*.jsonl")).open()]
    assert letter["reason"] == f"event of {len(original):,} bytes is larger than max_event_bytes=8,000,000"
    assert letter["raw"].startswith('{"@timestamp"') and len(letter["raw"]) <= 1000
    assert (tmp_path / "dead-letter" / letter["copy"]).read_bytes() == original + b"\n"
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0


def test_an_event_over_the_batch_budget_but_within_the_limit_is_shipped_alone(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        for i in range(3):
            writer.append(big_event(i, 2_000))
        writer.append(big_event(3, 60_000))
        writer.append(big_event(4, 2_000))
    sink = FakeSink()
    with Shipper(tmp_path, sink, max_batch_bytes=10_000, max_event_bytes=100_000, backoff=FAST) as shipper:
        assert shipper.ship_backlog().dead_lettered == 0
    assert sink.sent == [["r0", "r1", "r2"], ["r3"], ["r4"]]


def test_a_line_cut_short_by_a_worker_that_never_came_back_is_dead_lettered(tmp_path: Path) -> None:
    live = EventLogWriter(tmp_path)  # holds the main stream
    with EventLogWriter(tmp_path) as crashed:
        crashed.append(event(0))
    with list_segments(tmp_path, "w1")[-1][1].open("ab") as handle:
        handle.write(b'{"@timestamp": "2024-05-01T10:00:00Z", "event": {"id": "r1"')
    live.append(event(2))
    sink = FakeSink()
    with Shipper(tmp_path, sink, backoff=FAST) as shipper:
        stats = shipper.ship_backlog()
    live.close()
    assert sorted(sink.received) == ["r0", "r2"] and stats.dead_lettered == 1
    (letter,) = [json.loads(line) for line in next((tmp_path / "dead-letter").glob("*.jsonl")).open()]
    assert letter["reason"].startswith("line cut short") and letter["source"]["stream"] == "w1"
    assert EventLogReader(tmp_path, "shipper").pending_bytes() == 0
