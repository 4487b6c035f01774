"""A durable, append-only event log on local disk: what the API writes and the shipper reads.

The log is a folder of numbered segment files, one JSON object per line, in **streams**: each
writer (:class:`EventLogWriter`; one per API worker process) appends to a stream of its own, so
any number of writers share a folder safely. A consumer such as the Elasticsearch shipper reads
every stream from its own checkpoint and commits what it delivered (:class:`EventLogReader`).
Events are never held only in memory: a crash or restart of either side, or an outage of whatever
they are shipped to, only delays them. Layout: :mod:`price_alchemy.eventlog.segments`.

Durability: each event is one ``write(2)`` to a file opened with ``O_APPEND``, so it is in the
kernel's page cache when :meth:`EventLogWriter.append` returns and survives a crash of the
process. A power cut can lose what was not yet synced (the writer's ``fsync`` policy bounds how
much) but never makes a reader skip an event written after the restart: a writer starts a fresh
segment on every open, numbered past every checkpoint, and a reader whose checkpoint lies beyond
the end of a shortened segment goes on after it. A line cut short by a crash is closed off by the
stream's next writer (or sealed by the shipper once no writer holds the stream) and handed to the
reader as a bad line, so it can be dead-lettered instead of corrupting the next event.
"""

from price_alchemy.eventlog.reader import EventLogReader
from price_alchemy.eventlog.segments import (
    MAIN_STREAM,
    SEGMENT_GLOB,
    LogRecord,
    Position,
    encode_event,
    list_segments,
    log_bytes,
    scan_segments,
    segment_path,
)
from price_alchemy.eventlog.writer import EventLogWriter, FsyncPolicy

__all__ = [
    "MAIN_STREAM",
    "SEGMENT_GLOB",
    "EventLogReader",
    "EventLogWriter",
    "FsyncPolicy",
    "LogRecord",
    "Position",
    "encode_event",
    "list_segments",
    "log_bytes",
    "scan_segments",
    "segment_path",
]
