"""Prometheus metrics of the API, in a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from price_alchemy.serving.model_store import LoadedModel

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 5000, 10_000)


class ServingMetrics:
    """Request counts and latency by route and status, model calls, the served model."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
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

    def model_swapped(self, model: LoadedModel) -> None:
        self.model_info.clear()
        m = model.meta
        self.model_info.labels(m.name, m.version, m.alias, model.source).set(1)
        self.model_swaps.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
