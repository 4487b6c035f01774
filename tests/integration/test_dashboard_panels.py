"""Each Kibana panel's aggregation (``monitoring.panels``) run against a real node with known events.

Known traffic over five minutes (one of them empty) goes through the production index templates;
every panel's query must then give the numbers computed here independently: requests per
minute, latency percentiles (numpy on the same values), the error rate per minute, the price
histogram, traffic by category and condition, the model version per minute, and the drift
values per feature from the monitoring index.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from drift_traffic import index_events, request_event
from elasticsearch import Elasticsearch, helpers

from price_alchemy.monitoring import panels
from price_alchemy.monitoring.templates import ensure_templates

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 5, 10, 0, tzinfo=UTC)
#: Requests per minute; minute 2 has none.
PER_MINUTE = {0: 40, 1: 200, 2: 0, 3: 25, 4: 60}
#: Failed requests among them, per minute: (422s, 500s).
FAILURES = {0: (4, 0), 1: (10, 10), 3: (0, 5), 4: (0, 0)}
CATEGORIES = ("Women", "Beauty", "Kids", "Electronics", "(missing)")


def _known_traffic() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(3)
    events: list[dict[str, Any]] = []
    truth: dict[str, Any] = {
        "latency": {},
        "status": {},
        "prices": [],
        "category": Counter(),
        "condition": Counter(),
    }
    truth["version"] = {}
    for minute, count in PER_MINUTE.items():
        if not count:
            continue
        latencies = np.round(rng.lognormal(3.0, 0.6, count), 3)
        bad422, bad500 = FAILURES[minute]
        statuses = [422] * bad422 + [500] * bad500 + [200] * (count - bad422 - bad500)
        version = "1" if minute < 3 else "2"
        truth["latency"][minute] = latencies
        truth["status"][minute] = Counter(statuses)
        truth["version"][minute] = {version: count - bad422 - bad500}
        for i, (latency, status) in enumerate(zip(latencies, statuses, strict=True)):
            at = T0 + timedelta(minutes=minute, seconds=i * 59.0 / count)
            listing: list[dict[str, Any]] = []
            prices: list[float] = []
            if status == 200:
                price = float(np.round(rng.lognormal(3.0, 0.8), 2))
                category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
                condition = int(rng.integers(1, 6))
                listing = [
                    {
                        "name": "thing",
                        "item_condition_id": condition,
                        "category_name": None if category == "(missing)" else f"{category}/A/B",
                        "brand_name": None,
                        "shipping": int(rng.integers(2)),
                        "item_description": "0123456789",
                    }
                ]
                prices = [price]
                truth["prices"].append(price)
                truth["category"][category] += 1
                truth["condition"][condition] += 1
            events.append(
                request_event(
                    at, listing, prices, model_version=version, status=status, latency_ms=float(latency)
                )
            )
    return events, truth


@pytest.fixture(scope="module")
def known() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return _known_traffic()


@pytest.fixture
def node(es_clean: Elasticsearch, known: tuple[list[dict[str, Any]], dict[str, Any]]) -> Elasticsearch:
    ensure_templates(es_clean)
    assert index_events(es_clean, known[0]) == sum(PER_MINUTE.values())
    return es_clean


def _search(client: Elasticsearch, panel_id: str) -> dict[str, Any]:
    panel = panels.panel(panel_id)
    body = panel.search_body(T0 - timedelta(hours=2), T0 + timedelta(hours=2))
    return dict(client.search(index=panel.index, **body)["aggregations"])


def _minute(bucket: dict[str, Any]) -> int:
    return int((bucket["key"] / 1000 - T0.timestamp()) // 60)


def test_requests_per_minute(node: Elasticsearch) -> None:
    buckets = _search(node, "price-alchemy-requests-per-minute")["per_minute"]["buckets"]
    assert {_minute(b): b["doc_count"] for b in buckets} == PER_MINUTE


def test_latency_percentiles_match_numpy(node: Elasticsearch, known: tuple[list, dict[str, Any]]) -> None:
    buckets = _search(node, "price-alchemy-latency-percentiles")["per_minute"]["buckets"]
    checked = 0
    for bucket in buckets:
        if not bucket["doc_count"]:
            continue
        latencies = known[1]["latency"][_minute(bucket)]
        values = bucket["latency"]["values"]
        spread = float(np.ptp(latencies))
        for pct in panels.LATENCY_PERCENTS:
            expected = float(np.percentile(latencies, pct))
            # t-digest is exact at the median of small samples and close in the tails.
            tolerance = 0.02 * spread if pct == 50 else 0.08 * spread
            assert values[f"{pct}"] == pytest.approx(expected, abs=tolerance), (bucket["key_as_string"], pct)
            checked += 1
    assert checked == 3 * 4


def test_error_rate_per_minute(node: Elasticsearch, known: tuple[list, dict[str, Any]]) -> None:
    buckets = _search(node, "price-alchemy-status-codes")["per_minute"]["buckets"]
    for bucket in buckets:
        minute = _minute(bucket)
        counts = {int(s["key"]): s["doc_count"] for s in bucket["status"]["buckets"]}
        if not bucket["doc_count"]:
            assert counts == {}
            continue
        assert counts == dict(known[1]["status"][minute])
        errors = sum(c for s, c in counts.items() if s >= 400)
        assert errors / bucket["doc_count"] == pytest.approx(sum(FAILURES[minute]) / PER_MINUTE[minute])


def test_prediction_histogram(node: Elasticsearch, known: tuple[list, dict[str, Any]]) -> None:
    buckets = _search(node, "price-alchemy-prediction-distribution")["price"]["buckets"]
    got = {b["key"]: b["doc_count"] for b in buckets if b["doc_count"]}
    width = panels.PRICE_BUCKET_DOLLARS
    expected = Counter(float(np.floor(p / width) * width) for p in known[1]["prices"])
    assert got == dict(expected)


@pytest.mark.parametrize(
    ("panel_id", "agg", "truth_key"),
    [
        ("price-alchemy-top-category", "category", "category"),
        ("price-alchemy-condition", "condition", "condition"),
    ],
)
def test_traffic_breakdowns(
    node: Elasticsearch, known: tuple[list, dict[str, Any]], panel_id: str, agg: str, truth_key: str
) -> None:
    buckets = _search(node, panel_id)[agg]["buckets"]
    got = {str(b["key"]): b["doc_count"] for b in buckets}
    assert got == {str(k): v for k, v in known[1][truth_key].items()}


def test_model_version_per_minute(node: Elasticsearch, known: tuple[list, dict[str, Any]]) -> None:
    buckets = _search(node, "price-alchemy-model-version")["per_minute"]["buckets"]
    got = {
        _minute(b): {v["key"]: v["doc_count"] for v in b["version"]["buckets"]}
        for b in buckets
        if b["doc_count"]
    }
    assert got == known[1]["version"]


def test_drift_panel_reads_the_monitoring_documents(node: Elasticsearch) -> None:
    from price_alchemy.names import monitoring_index

    values = {(0, "price"): 0.31, (0, "shipping"): 0.02, (1, "price"): 0.05, (1, "shipping"): 0.04}
    actions = [
        {
            "_index": monitoring_index("2025.06"),
            "_id": f"{hour}-{feature}",
            "_source": {
                "@timestamp": (T0 + timedelta(hours=hour)).isoformat(),
                "drift": {"type": "feature", "feature": feature, "statistic": "psi", "value": value},
            },
        }
        for (hour, feature), value in values.items()
    ]
    # A summary document has no feature: it must not appear as a line of the chart.
    actions.append(
        {
            "_index": monitoring_index("2025.06"),
            "_id": "summary",
            "_source": {"@timestamp": T0.isoformat(), "drift": {"type": "summary", "value": 0.31}},
        }
    )
    helpers.bulk(node, actions, refresh="wait_for")

    buckets = _search(node, "price-alchemy-drift")["per_hour"]["buckets"]
    got = {
        (int((b["key"] / 1000 - T0.timestamp()) // 3600), f["key"]): f["psi"]["value"]
        for b in buckets
        for f in b["feature"]["buckets"]
    }
    assert got == pytest.approx(values)
