"""One ECS event per prediction request, as docs/request-events.md defines, into the durable log."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from price_alchemy import __version__
from price_alchemy.config import Settings
from price_alchemy.errors import EventLogFullError
from price_alchemy.eventlog import EventLogWriter
from price_alchemy.profile import CATEGORY_CUT, listing_signals
from price_alchemy.serving.metrics import ServingMetrics
from price_alchemy.serving.model_store import ModelMetadata

log = logging.getLogger(__name__)

ECS_VERSION = "8.11.0"
SERVICE_NAME = "price-alchemy-api"
DATASET = "price_alchemy.requests"
NAME_CUT = 100
#: Prediction routes that get a request event, by path (also when the body is rejected before routing).
PREDICTION_ROUTES = {"/v1/predict": "predict", "/v1/predict/batch": "predict_batch"}
#: Statuses of requests refused before authentication: their events are rate-limited.
REFUSED_STATUSES = frozenset({400, 401, 413})
DROP_LOG_INTERVAL_S = 10.0


@dataclass
class RequestContext:
    """What a request accumulates for its event: filled by the middleware, the route and the handlers."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_ns: int = field(default_factory=time.perf_counter_ns)
    batch_size: int = 0
    listings: Sequence[dict[str, Any]] | None = None
    prices: np.ndarray | None = None
    lows: np.ndarray | None = None
    highs: np.ndarray | None = None
    model: ModelMetadata | None = None  # the model that answered
    error_type: str | None = None
    error_message: str | None = None

    def fail(self, error_type: str, message: str) -> None:
        self.error_type, self.error_message = error_type, message


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _listing_fields(
    row: dict[str, Any], price: float, low: float | None, high: float | None
) -> dict[str, Any]:
    category = row.get("category_name")
    out: dict[str, Any] = listing_signals(row)
    out["name"] = (row.get("name") or "")[:NAME_CUT]
    out["price"] = price
    if category:
        out["category_name"] = category[:CATEGORY_CUT]
    if low is not None and high is not None:
        out["price_low"], out["price_high"] = low, high
    return out


def build_event(
    ctx: RequestContext, *, route: str, path: str, method: str, status: int, duration_ns: int
) -> dict[str, Any]:
    """The ECS event of one prediction request (see docs/request-events.md for every field)."""
    success = 200 <= status < 300
    pa: dict[str, Any] = {
        "route": route,
        "latency_ms": round(duration_ns / 1e6, 3),
        "batch_size": ctx.batch_size,
    }
    if ctx.model is not None:
        m = ctx.model
        pa["model"] = {"name": m.name, "version": m.version, "alias": m.alias}
    event: dict[str, Any] = {
        "@timestamp": _timestamp(ctx.received_at),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "id": ctx.request_id,
            "kind": "event",
            "category": ["web"],
            "type": ["access"],
            "dataset": DATASET,
            "outcome": "success" if success else "failure",
            "duration": duration_ns,
        },
        "http": {"request": {"method": method}, "response": {"status_code": status}},
        "url": {"path": path},
        "service": {"name": SERVICE_NAME, "version": __version__},
        "price_alchemy": pa,
    }
    if success and ctx.listings is not None and ctx.prices is not None:
        prices = ctx.prices.tolist()
        lows = ctx.lows.tolist() if ctx.lows is not None else [None] * len(prices)
        highs = ctx.highs.tolist() if ctx.highs is not None else [None] * len(prices)
        pa["listings"] = [
            _listing_fields(row, price, low, high)
            for row, price, low, high in zip(ctx.listings, prices, lows, highs, strict=True)
        ]
    if not success:
        event["error"] = {
            "type": ctx.error_type or f"HTTP{status}",
            "message": ctx.error_message or "request failed",
        }
    return event


class RequestEventLog:
    """Writes events to the durable log under ``settings.request_log_dir``; never fails a request.

    Each API worker process holds one (its own stream of the log). An event that is not written
    is counted in ``price_alchemy_request_events_dropped_total{reason}`` and logged (the first at
    once, then one summary line per ``DROP_LOG_INTERVAL_S``): ``buffer_full`` (the buffer holds
    ``request_log_max_bytes`` not yet shipped: the request is answered, its event dropped),
    ``write_failed`` (the disk refused it), ``build_failed``, and ``refused_over_rate``: requests
    refused before authentication (401, 413, 400) write at most ``request_log_refused_per_minute``
    events per minute, so a flood of unauthenticated requests cannot fill the buffer.
    """

    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None) -> None:
        self._writer = EventLogWriter(
            settings.request_log_dir,
            settings.request_log_segment_bytes,
            max_total_bytes=settings.request_log_max_bytes,
            fsync=settings.request_log_fsync,
            fsync_interval_s=settings.request_log_fsync_interval_s,
        )
        self._metrics = metrics or ServingMetrics()
        self._refused = _TokenBucket(settings.request_log_refused_per_minute)
        self._drops: Counter[str] = Counter()
        self._drops_logged_at = -DROP_LOG_INTERVAL_S
        log.info("request events: stream %r of %s", self._writer.stream or "main", settings.request_log_dir)

    @property
    def stream(self) -> str:
        return self._writer.stream

    def write(self, event: dict[str, Any], *, refused: bool = False) -> bool:
        """Append the event (a ``refused`` one only within its rate); False if it was dropped."""
        if refused and not self._refused.take():
            self.dropped("refused_over_rate", event)
            return False
        try:
            self._writer.append(event)
        except EventLogFullError as exc:
            self.dropped("buffer_full", event, exc)
            return False
        except Exception as exc:  # a full disk must not turn answers into errors; say so loudly
            self.dropped("write_failed", event, exc)
            return False
        self._metrics.events_written.inc()
        self._metrics.buffer_bytes.set(self._writer.buffer_bytes)
        return True

    def dropped(self, reason: str, event: dict[str, Any] | None, error: Exception | None = None) -> None:
        """Count and log an event that is not written."""
        self._metrics.events_dropped.labels(reason).inc()
        self._metrics.buffer_bytes.set(self._writer.buffer_bytes)
        self._drops[reason] += 1
        now = time.monotonic()
        if now - self._drops_logged_at < DROP_LOG_INTERVAL_S:
            return
        request_id = ((event or {}).get("event") or {}).get("id")
        counts = ", ".join(f"{n} {r}" for r, n in sorted(self._drops.items()))
        level = logging.WARNING if set(self._drops) == {"refused_over_rate"} else logging.ERROR
        log.log(level, "request events not written: %s (last: %s, %s)", counts, request_id, error or reason)
        self._drops.clear()
        self._drops_logged_at = now

    def close(self) -> None:
        self._writer.close()


class _TokenBucket:
    """At most ``per_minute`` takes in any minute, refilled continuously (a burst of ``per_minute``)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.rate = per_minute / 60.0
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
