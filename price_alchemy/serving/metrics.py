"""Prometheus metrics of the API, in a registry of its own (one per app, so tests can build many).

With several worker processes (``serve --workers N``) every worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, switched on by the server
before the workers start) and ``/metrics``, whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from price_alchemy.serving.model_store import LoadedModel

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 5000, 10_000)
DROP_REASONS = ("buffer_full", "write_failed", "build_failed", "refused_over_rate")


class ServingMetrics:
    """Request counts and latency by route and status, model calls, the served model."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._model_labels: tuple[str, str, str, str] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "price_alchemy_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "price_alchemy_http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.listings = Counter(
            "price_alchemy_predicted_listings",
            "Listings priced, by route.",
            ["route"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "price_alchemy_model_batch_rows",
            "Rows per model call (concurrent requests are coalesced).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "price_alchemy_model_info",
            "The served model (value 1) with its name, version, alias and source.",
            ["name", "version", "alias", "source"],
            registry=self.registry,
            multiprocess_mode="livemax",  # 1 while any live worker serves it
        )
        self.model_swaps = Counter(
            "price_alchemy_model_swaps",
            "Models swapped in (the first load included).",
            registry=self.registry,
        )
        self.model_refresh_failures = Counter(
            "price_alchemy_model_refresh_failures",
            "Failed checks or loads of the registry alias (MLflow down, broken version).",
            registry=self.registry,
        )

        self.events_written = Counter(
            "price_alchemy_request_events_written",
            "Request events appended to the durable buffer.",
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "price_alchemy_request_events_dropped",
            "Request events not written, by reason: buffer_full, write_failed, build_failed, "
            "refused_over_rate (requests refused before authentication beyond their rate).",
            ["reason"],
            registry=self.registry,
        )
        self.buffer_bytes = Gauge(
            "price_alchemy_request_log_buffer_bytes",
            "Bytes of request events in the buffer not yet shipped, as this worker last measured.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        for reason in DROP_REASONS:  # exported at 0 from the start, so a rate() has a series
            self.events_dropped.labels(reason)

    def model_swapped(self, model: LoadedModel) -> None:
        if self.multiprocess_dir is None:
            self.model_info.clear()
        elif self._model_labels is not None:  # labels cannot be removed from a worker's file: 0
            self.model_info.labels(*self._model_labels).set(0)
        m = model.meta
        self._model_labels = (m.name, m.version, m.alias, model.source)
        self.model_info.labels(*self._model_labels).set(1)
        self.model_swaps.inc()

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))
        return generate_latest(merged)

    def worker_stopped(self) -> None:
        """Forget this worker's live gauges (its counters stay in the sums)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))
