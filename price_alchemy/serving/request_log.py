"""One ECS event per prediction request, as docs/request-events.md defines, into the durable log."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from price_alchemy import __version__
from price_alchemy.config import Settings
from price_alchemy.eventlog import EventLogWriter
from price_alchemy.profile import CATEGORY_CUT, listing_signals
from price_alchemy.serving.model_store import ModelMetadata

log = logging.getLogger(__name__)

ECS_VERSION = "8.11.0"
SERVICE_NAME = "price-alchemy-api"
DATASET = "price_alchemy.requests"
NAME_CUT = 100
#: Prediction routes that get a request event, by path (also when the body is rejected before routing).
PREDICTION_ROUTES = {"/v1/predict": "predict", "/v1/predict/batch": "predict_batch"}


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
    """Writes events to the durable log under ``settings.request_log_dir``; never fails a request."""

    def __init__(self, settings: Settings) -> None:
        self._writer = EventLogWriter(settings.request_log_dir, settings.request_log_segment_bytes)
        self.failures = 0

    def write(self, event: dict[str, Any]) -> None:
        try:
            self._writer.append(event)
        except Exception as exc:  # a full disk must not turn answers into errors; say so loudly
            self.failures += 1
            log.error("cannot write request event %s: %s", event.get("event", {}).get("id"), exc)

    def close(self) -> None:
        self._writer.close()
