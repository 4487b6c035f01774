"""Appending to the event log: one stream per writer, a fresh segment per open, a size limit, fsync.

Safe by construction for any number of writers on one folder, in one process or many (uvicorn
workers, replicas sharing a volume): each :class:`EventLogWriter` claims a stream no live writer
holds (an exclusive ``flock``) and appends only to that stream's files, so writers never
interleave in a file and a reader can delete what it consumed of one stream without touching a
file another writer appends to.

On open a writer closes off a line its stream's previous writer left cut short by a crash (it
becomes one bad line, dead-lettered by the shipper) and starts a **fresh segment**, numbered past
every existing segment of the stream and past every reader's checkpoint of it: events written
after a restart never land in a file whose tail a power cut may have shortened below a reader's
checkpoint, so a reader can never skip them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from price_alchemy.errors import EventLogError, EventLogFullError
from price_alchemy.eventlog.segments import (
    encode_event,
    fsync_directory,
    highest_checkpointed_seq,
    list_segments,
    log_bytes,
    segment_path,
    stream_name,
    writer_lock_path,
)

log = logging.getLogger(__name__)

FsyncPolicy = Literal["never", "interval", "always"]
MAX_STREAMS = 4096
#: How often a writer re-measures the whole buffer (every stream) for its size limit; and, once
#: the limit is reached, how soon it looks again whether the shipper has freed space.
SIZE_CHECK_S = 1.0
FULL_RECHECK_S = 0.25


def _claim_stream(directory: Path) -> tuple[str, int]:
    """The first stream no live writer holds, with its lock held (the fd keeps it)."""
    for slot in range(MAX_STREAMS):
        stream = stream_name(slot)
        fd = os.open(writer_lock_path(directory, stream), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return stream, fd
    raise EventLogError(f"{MAX_STREAMS} writers already hold a stream in {directory}")


def _close_cut_line(path: Path) -> None:
    """End a last line left without its newline (its writer died mid-write)."""
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            handle.write(b"\n")


class EventLogWriter:
    """Appends events to a stream of its own in ``directory``; a new segment past ``segment_bytes``.

    ``max_total_bytes`` bounds the whole folder (every stream, as last measured, at most
    ``SIZE_CHECK_S`` old): an append that would pass it raises :class:`EventLogFullError` and writes
    nothing. ``fsync``: ``never`` (an event survives a crash of the process, not a power cut),
    ``interval`` (a background thread syncs at most every ``fsync_interval_s``: a power cut loses at
    most that much) or ``always`` (each append is synced before it returns).
    """

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = 16_000_000,
        *,
        max_total_bytes: int | None = None,
        fsync: FsyncPolicy = "never",
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_total_bytes = max_total_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self.stream, self._lock_fd = _claim_stream(directory)
        try:
            segments = list_segments(directory, self.stream)
            if segments:
                _close_cut_line(segments[-1][1])
            last = segments[-1][0] if segments else 0
            self._seq = max(last, highest_checkpointed_seq(directory, self.stream)) + 1
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._fd = -1  # the fresh segment is created by the first append
        self._size = 0
        self._cut_line = False  # a failed write left part of a line behind
        self._dirty = self._dir_dirty = False
        self._buffer_bytes = 0
        self._measured_at = -1e9
        self._closed = False
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "interval":
            self._syncer = threading.Thread(
                target=self._sync_loop, args=(fsync_interval_s,), name="event-log-fsync", daemon=True
            )
            self._syncer.start()

    @property
    def seq(self) -> int:
        """The segment the next append goes to (or the one being written)."""
        return self._seq

    @property
    def buffer_bytes(self) -> int:
        """The folder's size as this writer last measured it, plus what it appended since."""
        return self._buffer_bytes

    def append(self, event: Mapping[str, Any]) -> None:
        """Write one event; thread-safe. Raises :class:`EventLogFullError` when the buffer is full."""
        self.append_line(encode_event(event))

    def append_line(self, line: bytes) -> None:
        """Write one already-encoded line (must end with a newline and contain no other)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("event log writer is closed")
            if self.max_total_bytes is not None:
                self._check_room(len(line))
            if self._fd < 0:
                self._new_segment()
            elif self._size and self._size + len(line) > self.segment_bytes:
                self._finish_segment()
                self._seq += 1
                self._new_segment()
            if self._cut_line:
                self._write(b"\n")
                self._cut_line = False
            self._write(line)
            self._buffer_bytes += len(line)
            if self.fsync == "always":
                os.fsync(self._fd)
            else:
                self._dirty = True

    def _write(self, data: bytes) -> None:
        done = 0
        try:
            while done < len(data):  # a regular file writes all at once, short of a full disk
                done += os.write(self._fd, data[done:])
        finally:
            self._size += done
            if 0 < done < len(data):
                self._cut_line = True

    def _check_room(self, needed: int) -> None:
        assert self.max_total_bytes is not None
        now = time.monotonic()
        full = self._buffer_bytes + needed > self.max_total_bytes
        if now - self._measured_at >= (FULL_RECHECK_S if full else SIZE_CHECK_S):
            self._buffer_bytes, self._measured_at = log_bytes(self.directory), now
            full = self._buffer_bytes + needed > self.max_total_bytes
        if full:
            raise EventLogFullError(
                f"the event log in {self.directory} holds {self._buffer_bytes:,} bytes not yet shipped "
                f"(limit {self.max_total_bytes:,}): event not written"
            )

    def _new_segment(self) -> None:
        while True:
            path = segment_path(self.directory, self._seq, self.stream)
            try:
                self._fd = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o640
                )
                break
            except FileExistsError:  # never expected (the stream is ours); never append to it
                self._seq += 1
        self._size = 0
        if self.fsync == "always":
            fsync_directory(self.directory)
        else:
            self._dir_dirty = True

    def _finish_segment(self) -> None:
        if self.fsync != "never" and self._dirty:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._dirty = False

    def sync(self) -> None:
        """Flush what was appended (and new segments' directory entries) to stable storage now."""
        with self._lock:
            if self._fd < 0 or not (self._dirty or self._dir_dirty):
                return
            fd = os.dup(self._fd)  # the segment may rotate while we sync: sync our own handle
            dir_dirty, self._dirty, self._dir_dirty = self._dir_dirty, False, False
        try:
            os.fsync(fd)
            if dir_dirty:
                fsync_directory(self.directory)
        finally:
            os.close(fd)

    def _sync_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.sync()
            except OSError as exc:  # keep trying: the next interval may succeed
                log.warning("cannot fsync the event log in %s: %s", self.directory, exc)

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
            self._syncer = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd >= 0:
                if self.fsync != "never" and (self._dirty or self._dir_dirty):
                    os.fsync(self._fd)
                    fsync_directory(self.directory)
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)  # releases the stream for the next writer

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
