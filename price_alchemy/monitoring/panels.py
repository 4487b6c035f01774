"""The Kibana dashboard's panels as data: each panel's Elasticsearch aggregation, runnable here.

Kibana cannot run on the development machines, so the saved objects in
``docker/kibana/price-alchemy-dashboards.ndjson`` cannot be rendered in a test. Instead, each
panel's query is written down here with the same fields, intervals, sizes and percentiles as its
visualization (a static test checks that the two agree and that every field is mapped by the index
templates), and an integration test runs these aggregations against a real Elasticsearch node
holding known request events, checking the numbers a panel would draw.

The visualizations are Kibana's aggregation-based ones (``visualization`` saved objects with a
``visState``): each is a list of bucket aggregations nested in order with metrics innermost, which
is exactly the shape of :attr:`Panel.aggs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

REQUESTS_INDEX = "price-alchemy-requests*"
MONITORING_INDEX = "price-alchemy-monitoring*"
TIME_FIELD = "@timestamp"
#: Saved-object ids (stable: re-importing overwrites instead of duplicating).
DASHBOARD_ID = "price-alchemy-dashboard"
DATA_VIEW_IDS = {"requests": "price-alchemy-requests", "monitoring": "price-alchemy-monitoring"}
LATENCY_PERCENTS = (50.0, 95.0, 99.0)
PRICE_BUCKET_DOLLARS = 5


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: its visualization id, data view and Elasticsearch aggregation."""

    id: str
    title: str
    data_view: Literal["requests", "monitoring"]
    aggs: dict[str, Any]

    @property
    def index(self) -> str:
        return REQUESTS_INDEX if self.data_view == "requests" else MONITORING_INDEX

    def fields(self) -> set[str]:
        """Every field the aggregation reads."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "field" and isinstance(value, str):
                        found.add(value)
                    else:
                        walk(value)

        walk(self.aggs)
        return found

    def search_body(self, start: datetime, end: datetime) -> dict[str, Any]:
        """The request Kibana makes for a time range: a ``@timestamp`` filter, no hits, the aggs."""
        return {
            "size": 0,
            "query": {
                "bool": {
                    "filter": [{"range": {TIME_FIELD: {"gte": start.isoformat(), "lt": end.isoformat()}}}]
                }
            },
            "aggs": self.aggs,
        }


def _per_minute(inner: dict[str, Any] | None = None) -> dict[str, Any]:
    bucket: dict[str, Any] = {"date_histogram": {"field": TIME_FIELD, "fixed_interval": "1m"}}
    if inner:
        bucket["aggs"] = inner
    return {"per_minute": bucket}


PANELS: tuple[Panel, ...] = (
    Panel("price-alchemy-requests-per-minute", "Requests per minute", "requests", _per_minute()),
    Panel(
        "price-alchemy-latency-percentiles",
        "Latency p50 / p95 / p99 (ms)",
        "requests",
        _per_minute(
            {
                "latency": {
                    "percentiles": {"field": "price_alchemy.latency_ms", "percents": list(LATENCY_PERCENTS)}
                }
            }
        ),
    ),
    Panel(
        "price-alchemy-status-codes",
        "Responses by status code (share per minute: the error rate)",
        "requests",
        _per_minute({"status": {"terms": {"field": "http.response.status_code", "size": 10}}}),
    ),
    Panel(
        "price-alchemy-prediction-distribution",
        "Suggested prices (histogram, $5 buckets)",
        "requests",
        {"price": {"histogram": {"field": "price_alchemy.listings.price", "interval": PRICE_BUCKET_DOLLARS}}},
    ),
    Panel(
        "price-alchemy-top-category",
        "Traffic by top-level category",
        "requests",
        {"category": {"terms": {"field": "price_alchemy.listings.top_category", "size": 15}}},
    ),
    Panel(
        "price-alchemy-condition",
        "Traffic by item condition",
        "requests",
        {"condition": {"terms": {"field": "price_alchemy.listings.item_condition_id", "size": 5}}},
    ),
    Panel(
        "price-alchemy-model-version",
        "Model version answering (per minute)",
        "requests",
        _per_minute({"version": {"terms": {"field": "price_alchemy.model.version", "size": 5}}}),
    ),
    Panel(
        "price-alchemy-drift",
        "Drift (PSI) by feature",
        "monitoring",
        {
            "per_hour": {
                "date_histogram": {"field": TIME_FIELD, "fixed_interval": "1h"},
                "aggs": {
                    "feature": {
                        "terms": {"field": "drift.feature", "size": 10},
                        "aggs": {"psi": {"max": {"field": "drift.value"}}},
                    }
                },
            }
        },
    ),
)


def panel(panel_id: str) -> Panel:
    """The panel with this visualization id."""
    for candidate in PANELS:
        if candidate.id == panel_id:
            return candidate
    raise KeyError(f"no dashboard panel {panel_id!r}")
