"""The durable event log: order, rotation, checkpoints, crash leftovers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from price_alchemy.eventlog import EventLogReader, EventLogWriter, Position, list_segments

pytestmark = pytest.mark.unit


def test_events_come_back_in_order_across_segments(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_bytes=200) as writer:
        for i in range(50):
            writer.append({"i": i, "pad": "x" * 20})
    assert len(list_segments(tmp_path)) > 5
    records = EventLogReader(tmp_path).read(max_events=1000)
    assert [r.event["i"] for r in records if r.event] == list(range(50))


def test_commit_resumes_after_the_checkpoint_and_deletes_consumed_segments(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_bytes=100) as writer:
        for i in range(20):
            writer.append({"i": i})
    reader = EventLogReader(tmp_path)
    first = reader.read(max_events=12)
    reader.commit(first[-1].end)
    assert list_segments(tmp_path)[0][0] == first[-1].end.seq  # older segments gone
    again = EventLogReader(tmp_path).read(max_events=100)  # a new reader (a restart) resumes
    assert [r.event["i"] for r in again if r.event] == list(range(12, 20))
    assert EventLogReader(tmp_path).pending_bytes() > 0


def test_a_restarted_writer_appends_after_existing_events(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        writer.append({"i": 0})
    with EventLogWriter(tmp_path) as writer:
        writer.append({"i": 1})
    assert [r.event for r in EventLogReader(tmp_path).read()] == [{"i": 0}, {"i": 1}]


def test_a_line_cut_short_by_a_crash_becomes_one_bad_record(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        writer.append({"i": 0})
    segment = list_segments(tmp_path)[-1][1]
    with segment.open("ab") as handle:
        handle.write(b'{"i": 1, "trunc')  # the process died mid-write
    assert len(EventLogReader(tmp_path).read()) == 1  # an unfinished line is not read yet
    with EventLogWriter(tmp_path) as writer:
        writer.append({"i": 2})
    records = EventLogReader(tmp_path).read()
    assert [r.event for r in records] == [{"i": 0}, None, {"i": 2}]
    assert records[1].error and records[1].error.startswith("not JSON")
    assert records[1].raw == b'{"i": 1, "trunc'


def test_concurrent_appends_keep_every_line_whole(tmp_path: Path) -> None:
    writer = EventLogWriter(tmp_path, segment_bytes=5000)

    def write(worker: int) -> None:
        for i in range(200):
            writer.append({"w": worker, "i": i, "text": "é" * 30})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    records = EventLogReader(tmp_path).read(max_events=10_000)
    assert all(r.error is None for r in records)
    for worker in range(4):
        assert [r.event["i"] for r in records if r.event and r.event["w"] == worker] == list(range(200))


def test_checkpoint_defaults_to_the_first_segment(tmp_path: Path) -> None:
    assert EventLogReader(tmp_path).checkpoint() == Position(1, 0)
    assert EventLogReader(tmp_path).read() == []
