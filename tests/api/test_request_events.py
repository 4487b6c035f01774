"""The ECS request event of every prediction request (docs/request-events.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from serving_helpers import LISTING, AppFactory, Registry, read_events

pytestmark = pytest.mark.api


def test_one_event_per_prediction_request_with_the_contract_fields(
    make_client: AppFactory, tmp_path: Path, registry: Registry
) -> None:
    client = make_client(max_body_bytes=4096)
    no_brand = {**LISTING, "brand_name": None, "item_description": None, "category_name": None}
    single = client.post("/v1/predict", json=LISTING)
    batch = client.post("/v1/predict/batch", json={"listings": [no_brand, {**LISTING, "name": "N" * 150}]})
    invalid = client.post("/v1/predict", json={**LISTING, "shipping": 5})
    too_big = client.post("/v1/predict/batch", json={"listings": [LISTING] * 40})
    client.get("/v1/model")
    client.get("/health/ready")

    events = read_events(tmp_path / "home")

    assert [e["url"]["path"] for e in events] == [
        "/v1/predict",
        "/v1/predict/batch",
        "/v1/predict",
        "/v1/predict/batch",
    ]
    assert [e["event"]["id"] for e in events[:2]] == [single.json()["request_id"], batch.json()["request_id"]]
    assert [e["event"]["id"] for e in events[2:]] == [
        invalid.headers["x-request-id"],
        too_big.headers["x-request-id"],
    ]
    for event, status in zip(events, [200, 200, 422, 413], strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["@timestamp"])
        assert event["ecs"] == {"version": "8.11.0"}
        assert event["event"]["kind"] == "event"
        assert event["event"]["category"] == ["web"] and event["event"]["type"] == ["access"]
        assert event["event"]["dataset"] == "price_alchemy.requests"
        assert event["event"]["outcome"] == ("success" if status == 200 else "failure")
        assert event["http"] == {"request": {"method": "POST"}, "response": {"status_code": status}}
        assert event["service"] == {"name": "price-alchemy-api", "version": "0.1.0"}
        latency = event["price_alchemy"]["latency_ms"]
        assert 0 < latency < 10_000
        assert event["event"]["duration"] == pytest.approx(latency * 1e6, abs=1e3)

    ok = events[0]["price_alchemy"]
    assert ok["route"] == "predict" and ok["batch_size"] == 1
    assert ok["model"] == {"name": "price-alchemy", "version": registry.version, "alias": "champion"}
    (listing,) = ok["listings"]
    body = single.json()
    assert listing == {
        "item_condition_id": 2,
        "shipping": 1,
        "category_name": "Men/Shoes/Athletic",
        "top_category": "Men",
        "brand_name": "Nike",
        "name": LISTING["name"],
        "name_length": len(LISTING["name"]),
        "description_length": len(LISTING["item_description"]),
        "price": body["price"],
        "price_low": body["price_range"]["low"],
        "price_high": body["price_range"]["high"],
    }
    assert "error" not in events[0]

    two = events[1]["price_alchemy"]
    assert two["route"] == "predict_batch" and two["batch_size"] == 2 and len(two["listings"]) == 2
    assert (
        two["listings"][0]["brand_name"] == "(missing)" and two["listings"][0]["top_category"] == "(missing)"
    )
    assert "category_name" not in two["listings"][0] and two["listings"][0]["description_length"] == 0
    assert two["listings"][1]["name"] == "N" * 100 and two["listings"][1]["name_length"] == 150
    assert [x["price"] for x in two["listings"]] == [p["price"] for p in batch.json()["predictions"]]

    bad = events[2]
    assert bad["error"]["type"] == "RequestValidationError"
    assert "shipping" in bad["error"]["message"] and "less_than_equal" in bad["error"]["message"]
    assert bad["price_alchemy"]["batch_size"] == 0 and "listings" not in bad["price_alchemy"]
    assert events[3]["error"] == {
        "type": "BodyTooLargeError",
        "message": "request body exceeds the limit of max_body_bytes=4096 bytes",
    }
    raw = "".join(p.read_text() for p in (tmp_path / "home" / "request-log").glob("events-*.jsonl"))
    assert "SECRET-DESCRIPTION-TEXT" not in raw  # descriptions are never logged, only their length


def test_request_logging_can_be_switched_off(make_client: AppFactory, tmp_path: Path) -> None:
    client = make_client(request_log_enabled=False)

    assert client.post("/v1/predict", json=LISTING).status_code == 200
    assert read_events(tmp_path / "home") == []


def test_events_rotate_into_segments(make_client: AppFactory, tmp_path: Path) -> None:
    client = make_client(request_log_segment_bytes=4096)

    for _ in range(12):
        assert client.post("/v1/predict/batch", json={"listings": [LISTING] * 3}).status_code == 200

    segments = sorted((tmp_path / "home" / "request-log").glob("events-*.jsonl"))
    assert len(segments) >= 3
    assert all(p.stat().st_size <= 4096 for p in segments[:-1])
    assert len(read_events(tmp_path / "home")) == 12
