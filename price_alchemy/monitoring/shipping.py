"""Ship request events from the durable event log to Elasticsearch (or Logstash), exactly once, in order.

The shipper reads the log the API writes (:mod:`price_alchemy.eventlog`) from its checkpoint, a
batch at a time, and moves the checkpoint only after the sink confirmed every event of the batch
(or dead-lettered it). Exactly once follows from two halves: nothing is committed before it is
delivered (at least once: a crash or an outage replays the batch), and a replay cannot duplicate
(each document is created with ``_id = event.id``; a 409 means it is already there).

The log has one stream per writer process (:mod:`price_alchemy.eventlog`); the shipper reads them
all, taking turns, with one checkpoint per stream, and commits each stream's part of a batch. A
batch is bounded by bytes before anything is decoded (``max_batch_bytes``; a single event larger
than that goes alone up to ``max_event_bytes``), so memory does not grow with the event size.

While the target is down the same batch is retried with exponential back-off and jitter, forever
in ``--follow`` mode; nothing is dropped or skipped. Events no retry can deliver (a line that is
not JSON, no ``event.id`` or ``@timestamp``, a mapping rejection, a line cut short by a crash, an
event larger than ``max_event_bytes``, copied whole to ``dead-letter/oversized/`` without being
decoded) are written with their reason to the dead-letter log ``request-log/dead-letter/`` and
the rest go on.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from price_alchemy.errors import InvalidEventError, ShippingError, TransientError
from price_alchemy.eventlog import EventLogReader, EventLogWriter, LogRecord, Position, segment_path
from price_alchemy.monitoring.sinks import ItemResult, LoggedEvent, Sink, envelope, event_id, index_name

if TYPE_CHECKING:
    from price_alchemy.config import Settings

log = logging.getLogger(__name__)

READER_NAME = "shipper"
DEAD_LETTER_DIR = "dead-letter"
OVERSIZED_DIR = "oversized"  # under the dead-letter folder: whole lines too large to ship
#: Default byte budget of one batch, and the largest single event shipped (alone) at all.
MAX_BATCH_BYTES = 8_000_000
MAX_EVENT_BYTES = 8_000_000
#: How long ``--once`` keeps retrying an unreachable target before giving up with an error.
ONCE_GIVE_UP_S = 30.0


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: attempt n waits up to ``min(cap, initial * factor**n)``."""

    initial_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.5  # the wait is drawn from [(1 - jitter) * base, base]

    def base(self, attempt: int) -> float:
        return float(min(self.cap_s, self.initial_s * self.factor ** min(attempt, 64)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = self.base(attempt)
        return base * (1.0 - self.jitter * rng.random())


@dataclass
class ShipStats:
    delivered: int = 0  # indexed now
    duplicates: int = 0  # already there (a replay)
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    state: str = "starting"
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def shipped(self) -> int:
        return self.delivered + self.duplicates


class Shipper:
    """Reads ``log_dir`` with its own checkpoint and delivers to ``sink``; one per log folder."""

    def __init__(
        self,
        log_dir: Path,
        sink: Sink,
        *,
        batch_size: int = 1000,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        backoff: Backoff | None = None,
        poll_interval_s: float = 0.2,
        on_progress: Callable[[ShipStats], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.sink = sink
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes  # a bulk of 1,000 batch requests could be 100s of MB
        self.max_event_bytes = max_event_bytes
        self.backoff = backoff or Backoff()
        self.poll_interval_s = poll_interval_s
        self.on_progress = on_progress or (lambda stats: None)
        self.reader = EventLogReader(log_dir, READER_NAME, seal_idle=True)
        self.dead_letter_dir = log_dir / DEAD_LETTER_DIR
        self.stats = ShipStats()
        self._rng = random.Random(seed)
        self._dead_letters: EventLogWriter | None = None
        self._lock_file = (log_dir / f"{READER_NAME}.lock").open("w")
        try:  # two shippers on one folder would race on the checkpoint
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise ShippingError(f"another shipper is running on {log_dir}") from exc

    # --- the loop -------------------------------------------------------------------------
    def ship_backlog(
        self, stop: threading.Event | None = None, give_up_after_s: float | None = None
    ) -> ShipStats:
        """Ship everything written so far, then return. Retries while the target is down; with
        ``give_up_after_s`` raises :class:`ShippingError` after that long without progress."""
        stop = stop or threading.Event()
        if self._deliver([], stop, give_up_after_s) is None:  # templates first; fails fast if down
            return self.stats
        while not stop.is_set():
            if not self._ship_batch(stop, give_up_after_s):
                break
        return self.stats

    def follow(self, stop: threading.Event) -> ShipStats:
        """Ship new events as they are written until ``stop`` is set; never gives up on an outage."""
        while not stop.is_set():
            if not self._ship_batch(stop, None):
                self._set_state("waiting for events")
                stop.wait(self.poll_interval_s)
        return self.stats

    def _ship_batch(self, stop: threading.Event, give_up_after_s: float | None) -> bool:
        """Deliver and commit the next batch; False when the log has nothing new."""
        records = self.reader.read(
            max_events=self.batch_size,
            max_bytes=self.max_batch_bytes,
            max_event_bytes=self.max_event_bytes,
            project=envelope,  # keep only where each event goes; its line is what is sent
        )
        if not records:
            return False
        events: list[tuple[LogRecord, dict[str, Any]]] = []
        dead: list[tuple[LogRecord, str, int | None]] = []
        for record in records:
            problem = record.error or _invalid(record.event)
            if problem or record.event is None:
                dead.append((record, problem or "empty", None))
            else:
                events.append((record, LoggedEvent(record.event, record.raw)))
        results = self._deliver([e for _, e in events], stop, give_up_after_s)
        if results is None:  # stopped during an outage: nothing committed, replayed next time
            return False
        for (record, _), result in zip(events, results, strict=True):
            if result.outcome == "rejected":
                dead.append((record, result.reason or "rejected", result.status))
            elif result.outcome == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.delivered += 1
        if dead:
            self._dead_letter(sorted(dead, key=lambda d: _log_order(d[0].end)))
        ends: dict[str, Position] = {}
        for record in records:  # in log order within each stream: the last one is the furthest
            ends[record.end.stream] = record.end
        for end in ends.values():
            self.reader.commit(end)
        self.stats.batches += 1
        self._set_state("shipping")
        return True

    def _deliver(
        self, events: list[dict[str, Any]], stop: threading.Event, give_up_after_s: float | None
    ) -> list[ItemResult] | None:
        """Results for every event, retrying the whole batch or its retryable items with back-off."""
        results: list[ItemResult | None] = [None] * len(events)
        pending = list(range(len(events)))
        attempt, failing_since = 0, None
        while True:  # at least once: an empty batch still checks that the target is reachable
            try:
                self.sink.prepare()
                if not pending:
                    break
                answers = self.sink.send([events[i] for i in pending])
                for i, answer in zip(pending, answers, strict=True):
                    results[i] = answer
                retry = [i for i, answer in zip(pending, answers, strict=True) if answer.outcome == "retry"]
                if len(retry) < len(pending):
                    attempt, failing_since = 0, None  # progress
                if not retry:
                    break
                first = results[retry[0]]
                error = (
                    f"{len(retry)} events not accepted yet ({first.status}: {first.reason})" if first else ""
                )
                pending = retry
            except TransientError as exc:
                error = str(exc)
            failing_since = failing_since or time.monotonic()
            if give_up_after_s is not None and time.monotonic() - failing_since > give_up_after_s:
                raise ShippingError(
                    f"{self.sink.name} unreachable for {give_up_after_s:.0f}s ({error}); nothing lost: "
                    f"{self.reader.pending_bytes():,} bytes of events stay buffered in {self.log_dir}"
                )
            wait = self.backoff.delay(attempt, self._rng)
            attempt += 1
            self.stats.retries += 1
            self.stats.last_error = error
            self._set_state(f"retrying in {wait:.1f}s")
            log.warning("shipping to %s failed (%s); retry %d in %.1fs", self.sink.name, error, attempt, wait)
            if stop.wait(wait):
                return None
        return [r for r in results if r is not None]

    # --- dead letters ---------------------------------------------------------------------
    def _dead_letter(self, dead: list[tuple[LogRecord, str, int | None]]) -> None:
        if self._dead_letters is None:  # synced per append: a dead letter is an event's only copy
            self._dead_letters = EventLogWriter(self.dead_letter_dir, fsync="always")
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for record, reason, status in dead:
            letter = {
                "@timestamp": now,
                "reason": reason,
                "status": status,
                "sink": self.sink.name,
                "source": {
                    "stream": record.end.stream,
                    "segment": record.end.seq,
                    "end_offset": record.end.offset,
                },
                "event": None if record.event is None else json.loads(record.raw),  # all of it
                "raw": None if record.event is not None else record.raw.decode("utf-8", "replace"),
            }
            if record.oversized:
                letter["copy"] = self._copy_aside(record)
            self._dead_letters.append(letter)
            log.error("dead-lettered an event (%s) to %s", reason, self.dead_letter_dir)
        self.stats.dead_lettered += len(dead)

    def _copy_aside(self, record: LogRecord) -> str:
        """Copy an oversized line whole, in chunks (never decoded, never all in memory)."""
        start = record.start
        assert start is not None
        folder = self.dead_letter_dir / OVERSIZED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{start.stream or 'main'}-{start.seq:012d}-{start.offset}.jsonl"
        left = record.end.offset - start.offset
        with segment_path(self.log_dir, start.seq, start.stream).open("rb") as src, target.open("wb") as dst:
            src.seek(start.offset)
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        return target.relative_to(self.dead_letter_dir).as_posix()

    def _set_state(self, state: str) -> None:
        self.stats.state = state
        self.on_progress(self.stats)

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()
        self.sink.close()
        self._lock_file.close()

    def __enter__(self) -> Shipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _log_order(position: Position) -> tuple[str, int, int]:
    return position.stream, position.seq, position.offset


def _invalid(event: dict[str, Any] | None) -> str | None:
    if event is None:
        return None
    try:
        event_id(event)
        index_name(event)
    except InvalidEventError as exc:
        return str(exc)
    return None


def make_sink(settings: Settings) -> Sink:
    """The sink ``settings.ship_to`` names."""
    from price_alchemy.errors import ConfigError
    from price_alchemy.monitoring.elastic import connect
    from price_alchemy.monitoring.sinks import ElasticsearchSink, LogstashSink

    if settings.ship_to == "logstash":
        if not settings.logstash_url:
            raise ConfigError("PRICE_ALCHEMY_SHIP_TO=logstash needs PRICE_ALCHEMY_LOGSTASH_URL")
        templates = connect(settings, max_retries=0) if settings.elasticsearch_url else None
        return LogstashSink(settings.logstash_url, templates_client=templates)
    return ElasticsearchSink(connect(settings, max_retries=0))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the current batch is finished or left uncommitted, never half)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
