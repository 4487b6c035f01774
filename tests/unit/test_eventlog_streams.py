"""The event log with many writers, a byte budget, power cuts, crashed writers and a size limit."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from price_alchemy.errors import EventLogFullError
from price_alchemy.eventlog import EventLogReader, EventLogWriter, encode_event, list_segments, scan_segments
from price_alchemy.eventlog import writer as writer_module
from price_alchemy.eventlog.segments import writer_lock_path

pytestmark = pytest.mark.unit


def ids(records: list[Any]) -> list[Any]:
    return [r.event["i"] for r in records if r.event is not None]


def test_writers_on_one_folder_get_streams_of_their_own(tmp_path: Path) -> None:
    first, second = EventLogWriter(tmp_path), EventLogWriter(tmp_path)
    assert (first.stream, second.stream) == ("", "w1")
    first.append({"i": 1})
    second.append({"i": 2})
    first.close()
    third = EventLogWriter(tmp_path)  # a restart takes the stream that is free again
    assert third.stream == ""
    third.append({"i": 3})
    second.close()
    third.close()
    assert {s: [p.name for _, p in segs] for s, segs in scan_segments(tmp_path).items()} == {
        "": ["events-000000000001.jsonl", "events-000000000002.jsonl"],  # a fresh segment per open
        "w1": ["events-w1-000000000001.jsonl"],
    }
    assert sorted(ids(EventLogReader(tmp_path).read())) == [1, 2, 3]


def _write_from_a_process(directory: str, worker: int, count: int, pause_s: float = 0.0) -> None:
    with EventLogWriter(Path(directory), segment_bytes=2000) as writer:
        for i in range(count):
            writer.append({"i": f"{worker}-{i}", "pad": "x" * 40})
            time.sleep(pause_s)  # writers still appending while the reader commits and deletes


def test_writer_processes_and_a_committing_reader_lose_nothing(tmp_path: Path) -> None:
    """The measured loss (28% with two writers, commits every 50 events) cannot happen."""
    context = multiprocessing.get_context("spawn")
    counts = {0: 700, 1: 300, 2: 150}
    procs = [
        context.Process(target=_write_from_a_process, args=(str(tmp_path), w, n, 0.002))
        for w, n in counts.items()
    ]
    for proc in procs:
        proc.start()
    reader = EventLogReader(tmp_path)
    seen: list[str] = []

    def drain() -> None:
        while records := reader.read(max_events=50):
            seen.extend(ids(records))
            ends = {getattr(r.end, "stream", ""): r.end for r in records}  # the last of each stream
            for end in ends.values():
                reader.commit(end)

    while any(p.is_alive() for p in procs):
        drain()
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0
    drain()
    expected = [f"{w}-{i}" for w, n in counts.items() for i in range(n)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    for worker, count in counts.items():  # in order within each writer
        mine = [s for s in seen if s.startswith(f"{worker}-")]
        assert mine == [f"{worker}-{i}" for i in range(count)]
    assert reader.pending_bytes() == 0


def test_the_reader_takes_turns_between_streams(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as busy, EventLogWriter(tmp_path) as quiet:
        for i in range(100):
            busy.append({"i": f"busy-{i}"})
        quiet.append({"i": "quiet-0"})
    reader = EventLogReader(tmp_path)
    first, second = reader.read(max_events=10), reader.read(max_events=10)
    assert ids(first)[0] == "busy-0" and ids(second)[0] == "quiet-0"


def test_a_batch_never_holds_more_than_its_byte_budget(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        for i in range(40):
            writer.append({"i": i, "pad": "y" * 9_000})
    reader = EventLogReader(tmp_path)
    records = reader.read(max_events=1000, max_bytes=35_000)
    assert len(records) == 3 and sum(len(r.raw) for r in records) <= 35_000
    reader.commit(records[-1].end)
    assert ids(reader.read(max_events=1000, max_bytes=35_000)) == [3, 4, 5]


def test_an_event_over_the_batch_budget_comes_alone_and_a_huge_one_is_never_read(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_bytes=200_000_000) as writer:
        writer.append({"i": 0})
        writer.append({"i": 1, "pad": "z" * 30_000})  # over the batch budget, under the event limit
        writer.append({"i": 2, "pad": "z" * 60_000_000})  # over both
        writer.append({"i": 3})
    reader = EventLogReader(tmp_path)
    kwargs: dict[str, Any] = {"max_bytes": 20_000, "max_event_bytes": 40_000}
    assert ids(reader.read(**kwargs)) == [0]  # stops before the large one
    reader.commit(reader.read(**kwargs)[-1].end)
    alone = reader.read(**kwargs)
    assert ids(alone) == [1]
    reader.commit(alone[-1].end)

    tracemalloc.start()
    (huge,) = reader.read(**kwargs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert huge.oversized and huge.event is None and peak < 5_000_000  # 60 MB line, never in memory
    assert huge.error == "event of 60,000,016 bytes is larger than max_event_bytes=40,000"
    assert huge.raw.startswith(b'{"i":2,"pad":"zzz') and len(huge.raw) == 1000
    assert huge.start is not None and huge.end.offset - huge.start.offset == 60_000_017  # and its newline
    reader.commit(huge.end)
    assert ids(reader.read(**kwargs)) == [3]


def test_after_a_power_cut_events_written_after_the_restart_are_all_read(tmp_path: Path) -> None:
    """The shipper had read 60 events and committed; the power cut took the segment's tail back."""
    with EventLogWriter(tmp_path) as writer:
        for i in range(60):
            writer.append({"i": i})
    reader = EventLogReader(tmp_path, "shipper")
    reader.commit(reader.read(max_events=1000)[-1].end)
    segment = list_segments(tmp_path)[-1][1]
    os.truncate(segment, segment.stat().st_size // 3 - 2)  # cut in the middle of a line, too

    with EventLogWriter(tmp_path) as writer:  # the API after the reboot
        for i in range(100, 150):
            writer.append({"i": i})
    records = EventLogReader(tmp_path, "shipper").read(max_events=1000)
    assert [r.error for r in records] == [None] * 50
    assert ids(records) == list(range(100, 150))


def test_a_segment_lost_whole_in_a_power_cut_does_not_hide_the_next_ones(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        for i in range(20):
            writer.append({"i": i})
    reader = EventLogReader(tmp_path, "shipper")
    reader.commit(reader.read()[-1].end)
    for _, path in list_segments(tmp_path):
        path.unlink()  # created but its directory entry never reached the disk

    with EventLogWriter(tmp_path) as writer:  # numbers its segment past the checkpoint
        for i in range(20, 30):
            writer.append({"i": i})
    assert ids(EventLogReader(tmp_path, "shipper").read()) == list(range(20, 30))


def test_a_line_cut_short_by_a_writer_that_never_came_back_is_sealed(tmp_path: Path) -> None:
    live = EventLogWriter(tmp_path)
    with EventLogWriter(tmp_path) as gone:
        gone.append({"i": 0})
    with list_segments(tmp_path, "w1")[-1][1].open("ab") as handle:
        handle.write(b'{"i": 1, "cut')  # the process died mid-write
    live.append({"i": 2})
    with list_segments(tmp_path)[-1][1].open("ab") as handle:
        handle.write(b'{"i": 3, "being wri')  # a live writer in the middle of a write

    assert len(EventLogReader(tmp_path).read()) == 2  # a plain reader waits for both lines
    sealed = EventLogReader(tmp_path, seal_idle=True).read()
    assert (sealed[0].event, sealed[0].error) == ({"i": 2}, None)
    assert sealed[1].end.stream == "w1" and sealed[1].event == {"i": 0}
    assert (
        sealed[2].raw == b'{"i": 1, "cut' and sealed[2].error == "line cut short (13 bytes without a newline)"
    )
    assert len(sealed) == 3  # the live writer's line is left alone
    live.close()


def test_a_full_buffer_refuses_appends_until_space_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "FULL_RECHECK_S", 0.0)
    line = {"i": 0, "pad": "p" * 83}  # 100 bytes a line
    assert len(encode_event(line)) == 100
    writer = EventLogWriter(tmp_path, segment_bytes=1000, max_total_bytes=2500)
    for i in range(25):
        writer.append({**line, "i": i % 10})
    with pytest.raises(EventLogFullError, match="holds 2,500 bytes not yet shipped"):
        writer.append(line)
    other = EventLogWriter(tmp_path, max_total_bytes=2500)  # the limit is for the whole folder
    with pytest.raises(EventLogFullError):
        other.append(line)
    reader = EventLogReader(tmp_path)
    assert len(reader.read(max_events=1000)) == 25  # nothing half-written
    reader.commit(reader.read(max_events=20)[-1].end)  # the shipper frees two segments
    writer.append(line)
    other.append(line)
    writer.close()
    other.close()
    assert len(reader.read(max_events=1000)) == 7


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_fsync_policies_sync_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", counting_fsync)
    writer = EventLogWriter(tmp_path, fsync=policy, fsync_interval_s=0.01)  # type: ignore[arg-type]
    writer.append({"i": 0})
    deadline = time.monotonic() + 2
    while not synced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert synced, f"{policy}: nothing was fsynced"
    writer.close()
    assert ids(EventLogReader(tmp_path).read()) == [0]


def test_the_writer_lock_is_released_when_the_process_dies(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    proc = context.Process(target=_write_from_a_process, args=(str(tmp_path), 9, 3))
    proc.start()
    proc.join()
    assert writer_lock_path(tmp_path, "").exists()
    with EventLogWriter(tmp_path) as writer:
        assert writer.stream == ""
    records = EventLogReader(tmp_path).read()
    assert [json.loads(r.raw)["i"] for r in records] == ["9-0", "9-1", "9-2"]
