"""The event log on disk: streams, their segment files, writer locks and readers' checkpoints.

One folder holds every stream. A stream is what one writer appends to, so a writer never shares a
file with another: the main stream's segments are ``events-<seq>.jsonl``, stream ``w<k>``'s are
``events-w<k>-<seq>.jsonl`` (``<seq>`` twelve digits, one JSON object per line). A writer owns its
stream by holding an exclusive ``flock`` on ``writer.lock`` (``writer.w<k>.lock``) for as long as
it runs; the kernel releases it when the process dies, so a restarted worker takes a free stream,
often the one it had. A reader keeps one checkpoint per stream: ``<reader>.checkpoint``
(``<reader>.w<k>.checkpoint``), ``{"stream", "seq", "offset"}``, replaced atomically and fsynced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEGMENT_GLOB = "events-*.jsonl"
MAIN_STREAM = ""
_SEGMENT_RE = re.compile(r"^events-(?:(w[1-9]\d*)-)?(\d{12})\.jsonl$")


def stream_name(slot: int) -> str:
    """Slot 0 is the main stream (the layout of a single writer); slot k is ``w<k>``."""
    return MAIN_STREAM if slot == 0 else f"w{slot}"


def _slot(stream: str) -> int:
    return int(stream[1:]) if stream else 0


def _suffix(stream: str) -> str:
    return f".{stream}" if stream else ""


def segment_path(directory: Path, seq: int, stream: str = MAIN_STREAM) -> Path:
    infix = f"{stream}-" if stream else ""
    return directory / f"events-{infix}{seq:012d}.jsonl"


def scan_segments(directory: Path) -> dict[str, list[tuple[int, Path]]]:
    """Every stream's segments, in order (sequence number, path)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.glob(SEGMENT_GLOB):
        match = _SEGMENT_RE.match(path.name)
        if match:
            found.setdefault(match.group(1) or MAIN_STREAM, []).append((int(match.group(2)), path))
    return {stream: sorted(found[stream]) for stream in sorted(found, key=_slot)}


def list_segments(directory: Path, stream: str = MAIN_STREAM) -> list[tuple[int, Path]]:
    """One stream's segments in order (sequence number, path)."""
    return scan_segments(directory).get(stream, [])


def log_bytes(directory: Path) -> int:
    """Bytes held by the segments of every stream (what the buffer's size limit counts)."""
    total = 0
    for path in directory.glob(SEGMENT_GLOB):
        with contextlib.suppress(FileNotFoundError):  # consumed and deleted meanwhile
            total += path.stat().st_size
    return total


def writer_lock_path(directory: Path, stream: str) -> Path:
    return directory / f"writer{_suffix(stream)}.lock"


def writer_running(directory: Path, stream: str) -> bool:
    """Whether a live process holds the stream (its writer lock); probed without blocking."""
    path = writer_lock_path(directory, stream)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the probe's own lock
    return False


def checkpoint_path(directory: Path, reader: str, stream: str) -> Path:
    return directory / f"{reader}{_suffix(stream)}.checkpoint"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: segment number and byte offset within it, in one stream."""

    seq: int
    offset: int
    stream: str = MAIN_STREAM


@dataclass(frozen=True)
class LogRecord:
    """One line read from the log: the event, or why it could not be decoded, and where it ends.

    ``start`` is where the line begins; ``oversized`` marks a line longer than the reader's
    ``max_event_bytes``, of which only the first bytes are in ``raw`` (never decoded).
    """

    event: dict[str, Any] | None
    raw: bytes
    error: str | None
    end: Position
    start: Position | None = None
    oversized: bool = False


def read_checkpoint(path: Path) -> Position | None:
    try:
        data = json.loads(path.read_text())
        return Position(int(data["seq"]), int(data["offset"]), str(data.get("stream", MAIN_STREAM)))
    except FileNotFoundError:
        return None


def write_checkpoint(path: Path, position: Position) -> None:
    """Replace the checkpoint atomically and durably (file and directory entry fsynced)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        json.dump({"stream": position.stream, "seq": position.seq, "offset": position.offset}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def highest_checkpointed_seq(directory: Path, stream: str) -> int:
    """The highest segment any reader's checkpoint of ``stream`` names (0 when none does)."""
    highest = 0
    for path in directory.glob("*.checkpoint"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            position = read_checkpoint(path)
            if position is not None and position.stream == stream:
                highest = max(highest, position.seq)
    return highest


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One compact JSON line; values JSON cannot hold (datetimes, paths) become strings."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"
