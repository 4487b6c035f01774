"""A durable, append-only event log on local disk: what the API writes and the shipper reads.

The log is a folder of numbered segment files (``events-000000000001.jsonl``, ...), one JSON
object per line. The API appends (:class:`EventLogWriter`); a consumer such as the Elasticsearch
shipper reads from its checkpoint and commits what it delivered (:class:`EventLogReader`). Events
are therefore never held only in memory: a crash or restart of either side, or an outage of
whatever they are shipped to, only delays them.

Durability: each event is one ``write(2)`` to a file opened with ``O_APPEND``, so it is in the
kernel's page cache when :meth:`EventLogWriter.append` returns and survives a crash of the process
(not a power cut: there is no ``fsync`` per event, which would cost milliseconds per request).
A line cut short by a crash is terminated on the next open and handed to the reader as a bad line,
so it can be dead-lettered instead of corrupting the next event.

One writer process per folder (the API runs one worker per home); any number of readers, each with
its own checkpoint name.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEGMENT_GLOB = "events-*.jsonl"
_SEGMENT_RE = re.compile(r"^events-(\d{12})\.jsonl$")


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"events-{seq:012d}.jsonl"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Segments of the log in order (sequence number, path)."""
    found = []
    for path in directory.glob(SEGMENT_GLOB):
        match = _SEGMENT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One compact JSON line; values JSON cannot hold (datetimes, paths) become strings."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"


class EventLogWriter:
    """Appends events to the newest segment; starts a new segment past ``segment_bytes``."""

    def __init__(self, directory: Path, segment_bytes: int = 16_000_000) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        segments = list_segments(directory)
        self._seq = segments[-1][0] if segments else 1
        self._fd = -1
        self._size = 0
        self._open(self._seq)

    def _open(self, seq: int) -> None:
        path = segment_path(self.directory, seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._seq = seq
        self._size = os.fstat(self._fd).st_size
        if self._size and _last_byte(path) != b"\n":  # a line cut short by a crash: close it off
            self._size += os.write(self._fd, b"\n")

    def append(self, event: Mapping[str, Any]) -> None:
        """Write one event; thread-safe."""
        self.append_line(encode_event(event))

    def append_line(self, line: bytes) -> None:
        """Write one already-encoded line (must end with a newline and contain no other)."""
        with self._lock:
            if self._fd < 0:
                raise RuntimeError("event log writer is closed")
            if self._size and self._size + len(line) > self.segment_bytes:
                os.close(self._fd)
                self._open(self._seq + 1)
            self._size += os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: segment number and byte offset within it."""

    seq: int
    offset: int


@dataclass(frozen=True)
class LogRecord:
    """One line read from the log: the event, or why it could not be decoded, and where it ends."""

    event: dict[str, Any] | None
    raw: bytes
    error: str | None
    end: Position


class EventLogReader:
    """Reads complete lines after a committed checkpoint; :meth:`commit` moves the checkpoint."""

    def __init__(self, directory: Path, name: str = "shipper") -> None:
        self.directory = directory
        self.checkpoint_path = directory / f"{name}.checkpoint"
        directory.mkdir(parents=True, exist_ok=True)

    def checkpoint(self) -> Position:
        """The position after the last committed event (the start of the log when none)."""
        try:
            data = json.loads(self.checkpoint_path.read_text())
            return Position(int(data["seq"]), int(data["offset"]))
        except FileNotFoundError:
            segments = list_segments(self.directory)
            return Position(segments[0][0] if segments else 1, 0)

    def read(self, max_events: int = 1000, start: Position | None = None) -> list[LogRecord]:
        """Up to ``max_events`` records after ``start`` (default: the checkpoint), in log order.

        A trailing line without its newline is still being written and is left for later.
        """
        position = start or self.checkpoint()
        records: list[LogRecord] = []
        for seq, path in list_segments(self.directory):
            if seq < position.seq:
                continue
            offset = position.offset if seq == position.seq else 0
            for record in _read_segment(path, seq, offset):
                records.append(record)
                if len(records) >= max_events:
                    return records
        return records

    def commit(self, position: Position, *, delete_consumed: bool = True) -> None:
        """Record that everything before ``position`` is delivered (atomically, fsynced).

        Segments wholly before it are deleted when ``delete_consumed`` (the default: a single
        consumer owns the folder); the segment being written is never deleted.
        """
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            json.dump({"seq": position.seq, "offset": position.offset}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.checkpoint_path)
        if delete_consumed:
            for seq, path in list_segments(self.directory):
                if seq < position.seq:
                    path.unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        """Bytes written but not yet committed (a measure of the backlog)."""
        position = self.checkpoint()
        total = 0
        for seq, path in list_segments(self.directory):
            if seq >= position.seq:
                size = path.stat().st_size
                total += size - position.offset if seq == position.seq else size
        return max(total, 0)


def _read_segment(path: Path, seq: int, offset: int) -> Iterator[LogRecord]:
    with path.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            if not line.endswith(b"\n"):
                return  # being written right now
            offset += len(line)
            end = Position(seq, offset)
            body = line.strip()
            if not body:
                continue
            try:
                event = json.loads(body)
            except ValueError as exc:
                yield LogRecord(None, body, f"not JSON: {exc}", end)
                continue
            if not isinstance(event, dict):
                yield LogRecord(None, body, "not a JSON object", end)
                continue
            yield LogRecord(event, body, None, end)
