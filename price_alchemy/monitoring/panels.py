"""The Kibana dashboard's panels as data: each panel's Elasticsearch aggregation, chart and place.

Kibana cannot run on the development machines, so the saved objects cannot be rendered in a test.
Instead each panel is written down here once: its Elasticsearch aggregation (fields, intervals,
sizes, percentiles), how it is drawn (:class:`Chart`) and where it sits on the dashboard
(:class:`Grid`). :mod:`price_alchemy.monitoring.kibana` generates
``docker/kibana/price-alchemy-dashboards.ndjson`` from these definitions (the file is never edited
by hand; a static test checks it equals the generator's output), and an integration test runs these
aggregations against a real Elasticsearch node holding known request events, checking the numbers a
panel would draw.

The visualizations are Kibana's aggregation-based ones (``visualization`` saved objects with a
``visState``): each is a list of bucket aggregations nested in order with metrics innermost, which
is exactly the shape of :attr:`Panel.aggs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from price_alchemy import names

TIME_FIELD = "@timestamp"
LATENCY_PERCENTS = (50.0, 95.0, 99.0)
PRICE_BUCKET_DOLLARS = 5

DataViewKey = Literal["requests", "monitoring"]


@dataclass(frozen=True)
class DataView:
    """A Kibana data view: saved-object id (stable, so re-importing overwrites), pattern, name."""

    id: str
    pattern: str
    name: str


DATA_VIEWS: dict[DataViewKey, DataView] = {
    "requests": DataView(names.REQUESTS_INDEX_PREFIX, names.REQUESTS_INDEX_PATTERN, "Price Alchemy requests"),
    "monitoring": DataView(
        names.MONITORING_INDEX_PREFIX, names.MONITORING_INDEX_PATTERN, "Price Alchemy drift monitoring"
    ),
}


@dataclass(frozen=True)
class Chart:
    """How Kibana draws a panel.

    ``line`` and ``histogram`` (vertical bars) put the first bucket aggregation on the x axis and
    split series by a second one; ``pie`` (a donut) slices by its bucket aggregation.
    ``value_label`` titles the value axis and names the series (xy charts only); ``stacked`` stacks
    the split series and ``percentage`` scales each x bucket to 100 % (a share, e.g. the error rate).
    """

    type: Literal["line", "histogram", "pie"]
    value_label: str = ""
    stacked: bool = False
    percentage: bool = False

    def __post_init__(self) -> None:
        if self.type == "pie" and (self.value_label or self.stacked or self.percentage):
            raise ValueError("a pie chart has no value axis to label, stack or scale")
        if self.type != "pie" and not self.value_label:
            raise ValueError(f"a {self.type} chart needs a value_label for its value axis")


@dataclass(frozen=True)
class Grid:
    """A panel's place on the dashboard's 48-column grid (rows of Kibana's grid units)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: visualization id, title, data view, aggregation, chart and place."""

    id: str
    title: str
    data_view: DataViewKey
    aggs: dict[str, Any]
    chart: Chart
    grid: Grid

    @property
    def index(self) -> str:
        """The index pattern the panel queries (its data view's title)."""
        return DATA_VIEWS[self.data_view].pattern

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
    Panel(
        "price-alchemy-requests-per-minute",
        "Requests per minute",
        "requests",
        _per_minute(),
        chart=Chart("line", "Requests"),
        grid=Grid(0, 0, 24, 12),
    ),
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
        chart=Chart("line", "Latency (ms)"),
        grid=Grid(24, 0, 24, 12),
    ),
    Panel(
        "price-alchemy-status-codes",
        "Responses by status code (share per minute: the error rate)",
        "requests",
        _per_minute({"status": {"terms": {"field": "http.response.status_code", "size": 10}}}),
        chart=Chart("histogram", "Share of requests", stacked=True, percentage=True),
        grid=Grid(0, 12, 24, 12),
    ),
    Panel(
        "price-alchemy-prediction-distribution",
        "Suggested prices (histogram, $5 buckets)",
        "requests",
        {"price": {"histogram": {"field": "price_alchemy.listings.price", "interval": PRICE_BUCKET_DOLLARS}}},
        chart=Chart("histogram", "Requests"),
        grid=Grid(24, 12, 24, 12),
    ),
    Panel(
        "price-alchemy-top-category",
        "Traffic by top-level category",
        "requests",
        {"category": {"terms": {"field": "price_alchemy.listings.top_category", "size": 15}}},
        chart=Chart("pie"),
        grid=Grid(0, 24, 16, 14),
    ),
    Panel(
        "price-alchemy-condition",
        "Traffic by item condition",
        "requests",
        {"condition": {"terms": {"field": "price_alchemy.listings.item_condition_id", "size": 5}}},
        chart=Chart("pie"),
        grid=Grid(16, 24, 16, 14),
    ),
    Panel(
        "price-alchemy-model-version",
        "Model version answering (per minute)",
        "requests",
        _per_minute({"version": {"terms": {"field": "price_alchemy.model.version", "size": 5}}}),
        chart=Chart("histogram", "Requests", stacked=True),
        grid=Grid(32, 24, 16, 14),
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
        chart=Chart("line", "PSI"),
        grid=Grid(0, 38, 48, 14),
    ),
)


def panel(panel_id: str) -> Panel:
    """The panel with this visualization id."""
    for candidate in PANELS:
        if candidate.id == panel_id:
            return candidate
    raise KeyError(f"no dashboard panel {panel_id!r}")
