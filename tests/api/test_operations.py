"""Model information, health, metrics, no-model behaviour and the local model cache."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import LISTING, AppFactory, Registry, read_events

pytestmark = pytest.mark.api
UNREACHABLE = "http://127.0.0.1:9"  # discard port: connection refused at once


def test_model_route_describes_the_champion(client: TestClient, registry: Registry) -> None:
    body = client.get("/v1/model").json()

    assert body["name"] == "price-alchemy" and body["alias"] == "champion"
    assert body["version"] == registry.version and body["run_id"] == registry.run_id
    assert body["test_rmsle"] == pytest.approx(registry.test_rmsle, abs=1e-9)
    assert body["source"] == "registry"
    trained_at = datetime.fromisoformat(body["trained_at"])
    assert timedelta(0) <= datetime.now(UTC) - trained_at < timedelta(hours=1)
    interval = body["price_interval"]
    assert interval["coverage"] == pytest.approx(0.8)
    assert interval["log_residual_low"] == pytest.approx(registry.interval["log_residual_low"])
    assert interval["log_residual_high"] == pytest.approx(registry.interval["log_residual_high"])
    assert interval["log_residual_low"] < 0 < interval["log_residual_high"]


def test_health(client: TestClient, registry: Registry) -> None:
    assert client.get("/health/live").json() == {"status": "alive", "model_version": None}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["model_version"] == registry.version


def test_metrics_count_requests_and_show_the_model(client: TestClient, registry: Registry) -> None:
    client.post("/v1/predict", json=LISTING)
    client.post("/v1/predict", json=LISTING)
    client.post("/v1/predict", json={"name": "x"})

    text = client.get("/metrics").text

    assert 'price_alchemy_http_requests_total{method="POST",route="/v1/predict",status="200"} 2.0' in text
    assert 'price_alchemy_http_requests_total{method="POST",route="/v1/predict",status="422"} 1.0' in text
    assert 'price_alchemy_predicted_listings_total{route="predict"} 2.0' in text
    assert (
        f'price_alchemy_model_info{{alias="champion",name="price-alchemy",source="registry",version="{registry.version}"}} 1.0'
        in text
    )
    assert 'price_alchemy_http_request_duration_seconds_count{route="/v1/predict"} 3.0' in text
    assert "price_alchemy_model_swaps_total 1.0" in text


def test_without_any_model_ready_and_predict_are_503(make_client: AppFactory, tmp_path: Path) -> None:
    empty_store = f"sqlite:///{tmp_path / 'empty.db'}"
    client = make_client(mlflow_tracking_uri=empty_store)

    ready = client.get("/health/ready")
    predict = client.post("/v1/predict", json=LISTING)
    batch = client.post("/v1/predict/batch", json={"listings": [LISTING]})
    model = client.get("/v1/model")

    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert predict.status_code == batch.status_code == model.status_code == 503
    # why (the registry's "no version ... has alias 'champion'") is in the log and the event, not the body
    # (tests/api/test_error_hygiene.py); the body names only the stable error type
    assert ready.json()["type"] == predict.json()["type"] == model.json()["type"] == "model_not_ready"
    assert client.post("/v1/predict", json={"name": 1}).status_code == 422  # validation still first
    assert client.get("/health/live").status_code == 200
    events = read_events(tmp_path / "home")
    assert [e["http"]["response"]["status_code"] for e in events] == [503, 503, 422]
    assert events[0]["error"]["type"] == "ModelNotReadyError"
    assert "no version of 'price-alchemy' has alias 'champion'" in events[0]["error"]["message"]
    assert events[1]["price_alchemy"]["batch_size"] == 1
    assert "model" not in events[0]["price_alchemy"] and "listings" not in events[0]["price_alchemy"]


def test_the_cached_model_serves_when_mlflow_is_unreachable(
    make_client: AppFactory, tmp_path: Path, registry: Registry
) -> None:
    first = make_client()
    expected = first.post("/v1/predict", json=LISTING).json()
    pointer = json.loads((tmp_path / "home" / "serving" / "model-cache" / "current.json").read_text())
    assert pointer["version"] == registry.version and pointer["name"] == "price-alchemy"
    assert (tmp_path / "home" / "serving" / "model-cache" / pointer["dir"] / "MLmodel").is_file()

    offline = make_client(mlflow_tracking_uri=UNREACHABLE)

    assert offline.get("/health/ready").status_code == 200
    info = offline.get("/v1/model").json()
    assert (info["version"], info["source"]) == (registry.version, "cache")
    assert info["price_interval"] is not None and info["test_rmsle"] == pytest.approx(registry.test_rmsle)
    again = offline.post("/v1/predict", json=LISTING).json()
    assert (again["price"], again["price_range"]) == (expected["price"], expected["price_range"])


def test_cache_of_another_model_name_is_not_served(make_client: AppFactory) -> None:
    make_client()  # fills the cache for price-alchemy@champion

    other = make_client(mlflow_tracking_uri=UNREACHABLE, model_name="another-model")

    assert other.get("/health/ready").status_code == 503


def test_openapi_documents_the_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert set(schema["paths"]) == {
        "/v1/predict",
        "/v1/predict/batch",
        "/v1/model",
        "/health/live",
        "/health/ready",
        "/metrics",
    }
    predict = schema["paths"]["/v1/predict"]["post"]
    assert predict["summary"] and predict["description"].startswith("Suggest a price")
    assert {"200", "401", "413", "422", "503"} <= set(predict["responses"])
    listing = schema["components"]["schemas"]["Listing"]
    assert listing["required"] == ["name", "item_condition_id", "shipping"]
    assert listing["properties"]["item_condition_id"]["maximum"] == 5
    assert client.get("/docs").status_code == 200
