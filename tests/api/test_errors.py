"""Every bad input gets a 4xx naming the field and the rule; auth and body-size limits."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_helpers import LISTING, AppFactory, read_events

pytestmark = pytest.mark.api


def _with(**changes: Any) -> dict[str, Any]:
    listing = dict(LISTING)
    for key, value in changes.items():
        if value is _DROP:
            listing.pop(key)
        else:
            listing[key] = value
    return listing


_DROP = object()


@pytest.mark.parametrize(
    ("listing", "field", "rule"),
    [
        (_with(item_condition_id=0), "item_condition_id", "greater_than_equal"),
        (_with(item_condition_id=6), "item_condition_id", "less_than_equal"),
        (_with(item_condition_id="3"), "item_condition_id", "int_type"),
        (_with(item_condition_id=2.5), "item_condition_id", "int_type"),
        (_with(item_condition_id=True), "item_condition_id", "int_type"),
        (_with(shipping=2), "shipping", "less_than_equal"),
        (_with(shipping=-1), "shipping", "greater_than_equal"),
        (_with(shipping=None), "shipping", "int_type"),
        (_with(name=_DROP), "name", "missing"),
        (_with(item_condition_id=_DROP), "item_condition_id", "missing"),
        (_with(shipping=_DROP), "shipping", "missing"),
        (_with(name=""), "name", "string_too_short"),
        (_with(name="x" * 256), "name", "string_too_long"),
        (_with(name=12), "name", "string_type"),
        (_with(brand_name="b" * 101), "brand_name", "string_too_long"),
        (_with(item_description="d" * 10_001), "item_description", "string_too_long"),
        (_with(category_name="Men/Shoes"), "category_name", "string_pattern_mismatch"),
        (_with(category_name="Men//Shoes"), "category_name", "string_pattern_mismatch"),
        (_with(category_name="/".join(["c" * 60] * 5)), "category_name", "string_too_long"),
        (_with(price=12.0), "price", "extra_forbidden"),
    ],
)
def test_invalid_listing_is_422_naming_field_and_rule(
    client: TestClient, listing: dict[str, Any], field: str, rule: str
) -> None:
    response = client.post("/v1/predict", json=listing)

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["field"], e["type"]) for e in errors] == [(field, rule)]
    assert errors[0]["msg"]


def test_rule_limits_are_stated(client: TestClient) -> None:
    error = client.post("/v1/predict", json=_with(item_condition_id=9)).json()["detail"][0]

    assert error["ctx"] == {"le": 5}
    assert error["msg"] == "Input should be less than or equal to 5"


@pytest.mark.parametrize(
    ("content", "headers", "field", "rule"),
    [
        (b"{not json", {"content-type": "application/json"}, "body", "json_invalid"),
        (b"", {"content-type": "application/json"}, "body", "missing"),
        (b"[1, 2]", {"content-type": "application/json"}, "body", "model_attributes_type"),
        (b'"a string"', {"content-type": "application/json"}, "body", "model_attributes_type"),
        (b"name=x", {"content-type": "application/x-www-form-urlencoded"}, "body", "model_attributes_type"),
    ],
)
def test_malformed_bodies_are_4xx(
    client: TestClient, content: bytes, headers: dict[str, str], field: str, rule: str
) -> None:
    response = client.post("/v1/predict", content=content, headers=headers)

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["field"], error["type"]) == (field, rule)


def test_invalid_utf8_is_4xx(client: TestClient) -> None:
    response = client.post(
        "/v1/predict", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
    )

    assert 400 <= response.status_code < 500


def test_batch_item_errors_name_the_index(client: TestClient) -> None:
    listings = [LISTING, _with(shipping=3), LISTING]

    response = client.post("/v1/predict/batch", json={"listings": listings})

    assert response.status_code == 422
    assert [(e["field"], e["type"]) for e in response.json()["detail"]] == [
        ("listings.1.shipping", "less_than_equal")
    ]


def test_batch_size_limits(make_client: AppFactory) -> None:
    client = make_client(max_batch_size=5)

    too_many = client.post("/v1/predict/batch", json={"listings": [LISTING] * 6})
    empty = client.post("/v1/predict/batch", json={"listings": []})
    missing = client.post("/v1/predict/batch", json={})

    assert too_many.status_code == 422
    (error,) = too_many.json()["detail"]
    assert (error["field"], error["type"], error["ctx"]["max_length"]) == ("listings", "too_long", 5)
    assert "at most 5 items" in error["msg"]
    assert [(e["field"], e["type"]) for e in empty.json()["detail"]] == [("listings", "too_short")]
    assert [(e["field"], e["type"]) for e in missing.json()["detail"]] == [("listings", "missing")]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["BatchPredictRequest"]
    assert schema["properties"]["listings"]["maxItems"] == 5


def test_body_larger_than_the_limit_is_413(make_client: AppFactory) -> None:
    client = make_client(max_body_bytes=2048)
    big = {"listings": [LISTING] * 20}

    response = client.post("/v1/predict/batch", json=big)

    assert response.status_code == 413
    assert response.json() == {
        "detail": "request body exceeds the limit of max_body_bytes=2048 bytes",
        "type": "body_too_large",
        "request_id": response.headers["X-Request-ID"],
    }
    assert client.post("/v1/predict", json=LISTING).status_code == 200


def test_chunked_body_larger_than_the_limit_is_413(make_client: AppFactory) -> None:
    """No Content-Length (chunked upload): the limit still holds while the body streams in."""
    client = make_client(max_body_bytes=2048)

    def chunks() -> Any:
        yield b'{"listings": ['
        for i in range(30):
            yield (
                (b"," if i else b"")
                + b'{"name": "'
                + b"x" * 200
                + b'", "item_condition_id": 1, "shipping": 1}'
            )
        yield b"]}"

    response = client.post(
        "/v1/predict/batch", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert "max_body_bytes=2048" in response.json()["detail"]
    assert response.json()["type"] == "body_too_large"  # refused by the handler, not the middleware


def test_unknown_routes_and_methods_are_4xx(client: TestClient) -> None:
    assert client.get("/v1/predict").status_code == 405
    assert client.post("/v1/nothing", json={}).status_code == 404


KEY = "k3y-that-must-never-be-logged"


def test_api_key_required_when_configured(make_client: AppFactory, tmp_path: Any) -> None:
    client = make_client(api_key=KEY)

    missing = client.post("/v1/predict", json=LISTING)
    wrong = client.post("/v1/predict", json=LISTING, headers={"X-API-Key": "nope"})
    right = client.post("/v1/predict", json=LISTING, headers={"X-API-Key": KEY})
    model_without = client.get("/v1/model")
    model_with = client.get("/v1/model", headers={"X-API-Key": KEY})

    assert missing.status_code == wrong.status_code == model_without.status_code == 401
    assert missing.json() == {
        "detail": "missing or invalid X-API-Key header",
        "type": "unauthorized",
        "request_id": missing.headers["X-Request-ID"],
    }
    assert right.status_code == 200 and model_with.status_code == 200
    assert client.get("/health/ready").status_code == 200  # probes need no key
    assert client.get("/metrics").status_code == 200
    events = read_events(tmp_path / "home")
    assert [e["http"]["response"]["status_code"] for e in events] == [401, 401, 200]
    assert events[0]["error"] == {
        "type": "AuthenticationError",
        "message": "missing or invalid X-API-Key header",
    }
    log_text = "".join(p.read_text() for p in (tmp_path / "home" / "request-log").glob("events-*.jsonl"))
    assert KEY not in log_text
    scheme = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert scheme["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Required when the server has PRICE_ALCHEMY_API_KEY set.",
    }


def test_no_key_needed_by_default(client: TestClient) -> None:
    assert client.post("/v1/predict", json=LISTING, headers={"X-API-Key": "anything"}).status_code == 200
