"""Reading the event log: every stream from its own checkpoint, within a byte budget.

:meth:`EventLogReader.read` returns complete lines after each stream's checkpoint, taking turns
between streams so a busy writer cannot starve a quiet one, and never holds more than
``max_bytes`` of lines (``max_event_bytes`` for a single line larger than that, which comes alone):
memory is bounded by bytes before anything is decoded. A line longer than ``max_event_bytes`` is
not read into memory at all: it comes back as one ``oversized`` record with its first bytes and
its extent, for the caller to copy aside.

:meth:`commit` moves one stream's checkpoint and deletes that stream's segments wholly before it.
A writer only ever appends to the newest segment of its own stream, which a checkpoint never
passes, so no reader deletes a file a live writer may append to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from price_alchemy.eventlog.segments import (
    MAIN_STREAM,
    LogRecord,
    Position,
    checkpoint_path,
    read_checkpoint,
    scan_segments,
    write_checkpoint,
    writer_running,
)

log = logging.getLogger(__name__)

HEAD_BYTES = 1000  # what an oversized record keeps of its line
_SCAN_CHUNK = 1 << 20


Project = Callable[[dict[str, Any]], dict[str, Any]]


class _Budget:
    def __init__(
        self, max_events: int, max_bytes: int | None, max_event_bytes: int | None, project: Project | None
    ) -> None:
        self.project = project
        self.events_left = max_events
        self.max_bytes = max_bytes
        self.max_event_bytes = max(max_event_bytes or 0, max_bytes or 0) or None
        self.used = 0
        self.full = False  # stop the whole read

    def room(self) -> int | None:
        return None if self.max_bytes is None else max(self.max_bytes - self.used, 0)


class EventLogReader:
    """Reads complete lines after each stream's committed checkpoint; :meth:`commit` moves one.

    ``seal_idle``: a cut-short last line of a stream whose writer is gone (no process holds its
    lock) is returned as a bad record instead of being waited for (the shipper does this, so a
    worker that crashed mid-write and never came back cannot hold its stream up forever).
    """

    def __init__(self, directory: Path, name: str = "shipper", *, seal_idle: bool = False) -> None:
        self.directory = directory
        self.name = name
        self.seal_idle = seal_idle
        self.checkpoint_path = checkpoint_path(directory, name, MAIN_STREAM)
        directory.mkdir(parents=True, exist_ok=True)
        self._turn = 0
        self._warned: set[Position] = set()

    def streams(self) -> list[str]:
        """The streams that have segments now (the main stream first)."""
        return list(scan_segments(self.directory))

    def checkpoint(self, stream: str = MAIN_STREAM) -> Position:
        """The position after the stream's last committed event (its first segment when none)."""
        return self._checkpoint(stream, scan_segments(self.directory).get(stream, []))

    def _checkpoint(self, stream: str, segments: list[tuple[int, Path]]) -> Position:
        position = read_checkpoint(checkpoint_path(self.directory, self.name, stream))
        if position is not None:
            return position
        return Position(segments[0][0] if segments else 1, 0, stream)

    def read(
        self,
        max_events: int = 1000,
        start: Position | None = None,
        *,
        max_bytes: int | None = None,
        max_event_bytes: int | None = None,
        project: Project | None = None,
    ) -> list[LogRecord]:
        """Up to ``max_events`` records after the checkpoints, in log order within each stream.

        ``max_bytes`` bounds the lines read (newlines not counted); a first line larger than that
        comes alone if within ``max_event_bytes`` (default: ``max_bytes``), else as an oversized
        record. ``start`` replaces the checkpoint of its stream. A trailing line without its
        newline is still being written and is left for later (see ``seal_idle``). ``project``
        maps each decoded event to what is kept of it (a consumer that needs a few fields and the
        line itself then holds little more than the lines' bytes).
        """
        budget = _Budget(max_events, max_bytes, max_event_bytes, project)
        segments = scan_segments(self.directory)
        streams = list(segments)
        records: list[LogRecord] = []
        if not streams:
            return records
        first = self._turn % len(streams)
        self._turn += 1
        for stream in streams[first:] + streams[:first]:
            if start is not None and start.stream == stream:
                position = start
            else:
                position = self._checkpoint(stream, segments[stream])
            records.extend(self._read_stream(stream, segments[stream], position, budget, bool(records)))
            if budget.full or budget.events_left <= 0:
                break
        return records

    def _read_stream(
        self,
        stream: str,
        segments: list[tuple[int, Path]],
        position: Position,
        budget: _Budget,
        batch_started: bool,
    ) -> Iterator[LogRecord]:
        last_seq = segments[-1][0]
        for seq, path in segments:
            if seq < position.seq:
                continue
            offset = position.offset if seq == position.seq else 0
            try:
                handle = path.open("rb")
            except FileNotFoundError:  # consumed and deleted by another reader meanwhile
                continue
            with handle:
                size = handle.seek(0, 2)
                if offset > size:
                    self._beyond_end(Position(seq, offset, stream), size)
                    offset = size  # what it had is delivered; writers never append to it again
                handle.seek(offset)
                final = seq != last_seq
                for record in _read_lines(handle, seq, stream, offset, budget, batch_started, final, self):
                    batch_started = True
                    yield record
                if budget.full or budget.events_left <= 0 or handle.tell() < size:
                    return  # the budget is spent, or the stream waits for a line being written

    def _beyond_end(self, position: Position, size: int) -> None:
        if position not in self._warned:
            self._warned.add(position)
            log.warning(
                "checkpoint %s of stream %r is beyond the end of its segment (%d bytes): the "
                "segment lost its tail after being read (a power cut?); going on after it",
                position,
                position.stream or "main",
                size,
            )

    def idle(self, stream: str) -> bool:
        return self.seal_idle and not writer_running(self.directory, stream)

    def commit(self, position: Position, *, delete_consumed: bool = True) -> None:
        """Record that everything of ``position.stream`` before it is delivered (atomically, fsynced).

        That stream's segments wholly before it are deleted when ``delete_consumed`` (the default:
        one consumer owns the folder); the segment a writer appends to is never among them.
        """
        write_checkpoint(checkpoint_path(self.directory, self.name, position.stream), position)
        if delete_consumed:
            for seq, path in scan_segments(self.directory).get(position.stream, []):
                if seq < position.seq:
                    path.unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        """Bytes written but not yet committed, over every stream (a measure of the backlog)."""
        total = 0
        for stream, segments in scan_segments(self.directory).items():
            position = self._checkpoint(stream, segments)
            for seq, path in segments:
                if seq < position.seq:
                    continue
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                total += max(size - position.offset, 0) if seq == position.seq else size
        return total


def _read_lines(
    handle: BinaryIO,
    seq: int,
    stream: str,
    offset: int,
    budget: _Budget,
    batch_started: bool,
    final: bool,
    reader: EventLogReader,
) -> Iterator[LogRecord]:
    """Records from ``offset`` on, within the budget; stops before a line that does not fit."""
    while budget.events_left > 0:
        room = budget.room()
        line = handle.readline() if room is None else handle.readline(room + 1)
        if not line:
            return
        start = Position(seq, offset, stream)
        if line.endswith(b"\n"):
            body = line[:-1]
        elif room is not None and len(line) == room + 1:  # longer than what is left of the budget
            if batch_started:
                handle.seek(offset)
                budget.full = True
                return
            assert budget.max_event_bytes is not None
            line += handle.readline(budget.max_event_bytes - len(line) + 1)
            if line.endswith(b"\n"):
                body = line[:-1]
                budget.full = True  # a line over the batch budget comes alone
            elif len(line) == budget.max_event_bytes + 1:
                record = _oversized(handle, line, start, budget.max_event_bytes, final, reader)
                if record is None:
                    handle.seek(offset)
                    return
                budget.full = True
                yield record
                return
            elif final or reader.idle(stream):
                budget.full = True
                yield _cut_short(line, start, offset + len(line))
                return
            else:
                handle.seek(offset)
                return
        elif final or reader.idle(stream):  # its writer moved on, or is gone: it stays cut short
            offset += len(line)
            budget.events_left -= 1
            yield _cut_short(line, start, offset)
            continue
        else:
            handle.seek(offset)  # being written right now
            return
        offset += len(line)
        budget.used += len(body)
        body = body.strip()
        if not body:
            continue
        budget.events_left -= 1
        batch_started = True
        yield _decode(body, start, Position(seq, offset, stream), budget.project)
        if budget.full:
            return


def _decode(body: bytes, start: Position, end: Position, project: Project | None) -> LogRecord:
    try:
        event = json.loads(body)
    except ValueError as exc:
        return LogRecord(None, body, f"not JSON: {exc}", end, start)
    if not isinstance(event, dict):
        return LogRecord(None, body, "not a JSON object", end, start)
    return LogRecord(event if project is None else project(event), body, None, end, start)


def _cut_short(line: bytes, start: Position, end_offset: int) -> LogRecord:
    reason = f"line cut short ({len(line):,} bytes without a newline)"
    end = Position(start.seq, end_offset, start.stream)
    return LogRecord(None, line.strip()[:HEAD_BYTES], reason, end, start)


def _oversized(
    handle: BinaryIO, head: bytes, start: Position, limit: int, final: bool, reader: EventLogReader
) -> LogRecord | None:
    """Find the end of a line longer than ``limit`` without holding it; None while it is written."""
    length, terminator = len(head), 0
    while True:
        chunk = handle.read(_SCAN_CHUNK)
        if not chunk:
            if final or reader.idle(start.stream):
                break  # cut short for good: the record ends where the file does
            return None
        newline = chunk.find(b"\n")
        if newline >= 0:
            length, terminator = length + newline, 1
            handle.seek(start.offset + length + 1)
            break
        length += len(chunk)
    end = Position(start.seq, start.offset + length + terminator, start.stream)
    reason = f"event of {length:,} bytes is larger than max_event_bytes={limit:,}"
    return LogRecord(None, head[:HEAD_BYTES], reason, end, start, oversized=True)
