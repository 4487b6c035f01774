"""Prediction routes through the real app (TestClient) against a registered model."""

from __future__ import annotations

import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_helpers import LISTING, AppFactory, Registry

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.price_range import ListingScale
from price_alchemy.schema import FEATURE_COLUMNS

pytestmark = pytest.mark.api


def _direct_prices(registry: Registry, rows: list[dict[str, Any]]) -> np.ndarray:
    """What the registered pipeline itself says (no API in between)."""
    model = mlflow.sklearn.load_model(f"models:/price-alchemy/{registry.version}")
    frame = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS)).astype(
        {"item_condition_id": "int64", "shipping": "int64"}
    )
    return np.asarray(model.predict(frame))


def _sample(n: int) -> list[dict[str, Any]]:
    frame = generate_listings(n, seed=123, start_id=10**7, with_price=False)[list(FEATURE_COLUMNS)]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:
        row["item_condition_id"], row["shipping"] = int(row["item_condition_id"]), int(row["shipping"])
    return rows


def test_single_prediction_is_the_registered_pipelines_with_a_calibrated_range(
    client: TestClient, registry: Registry
) -> None:
    response = client.post("/v1/predict", json=LISTING)

    assert response.status_code == 200, response.text
    body = response.json()
    mlflow.set_tracking_uri(registry.tracking_uri)
    expected = float(_direct_prices(registry, [LISTING])[0])
    assert body["price"] == pytest.approx(round(expected, 2), abs=0.005)
    assert body["model"] == {"name": "price-alchemy", "version": registry.version, "alias": "champion"}
    assert body["request_id"] == response.headers["x-request-id"] and len(body["request_id"]) == 32
    scale = ListingScale.from_profile(registry.interval["scale"])
    assert scale is not None, "the API suite's model has a range that fits the listing"
    (width,) = scale.of(pd.DataFrame([LISTING]), np.array([expected]))
    low, high = (registry.interval[k] * width for k in ("log_residual_low", "log_residual_high"))
    price_range = body["price_range"]
    assert price_range["coverage"] == pytest.approx(0.8)
    assert price_range["low"] == pytest.approx(math.expm1(math.log1p(expected) + low), abs=0.006)
    assert price_range["high"] == pytest.approx(math.expm1(math.log1p(expected) + high), abs=0.006)
    assert 0 <= price_range["low"] < body["price"] < price_range["high"]


def test_optional_fields_may_be_missing_or_null(client: TestClient) -> None:
    listing = {"name": "old lamp", "item_condition_id": 5, "shipping": 0, "brand_name": None}

    response = client.post("/v1/predict", json=listing)

    assert response.status_code == 200, response.text
    assert response.json()["price"] > 0


def test_batch_returns_one_prediction_per_listing_in_order(client: TestClient, registry: Registry) -> None:
    rows = _sample(25)

    response = client.post("/v1/predict/batch", json={"listings": rows})

    assert response.status_code == 200, response.text
    body = response.json()
    mlflow.set_tracking_uri(registry.tracking_uri)
    expected = np.round(_direct_prices(registry, rows), 2)
    got = np.array([p["price"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=0.005)
    assert len(set(got.tolist())) > 5  # different listings, different prices: order matters
    assert all(p["price_range"]["low"] <= p["price"] <= p["price_range"]["high"] for p in body["predictions"])
    assert body["model"]["version"] == registry.version
    single = client.post("/v1/predict", json=rows[7]).json()
    assert single["price"] == body["predictions"][7]["price"]


def test_batch_of_exactly_the_maximum_is_accepted(make_client: AppFactory) -> None:
    client = make_client(max_batch_size=5)

    response = client.post("/v1/predict/batch", json={"listings": _sample(5)})

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5


def test_concurrent_requests_share_model_calls(make_client: AppFactory) -> None:
    """Many requests in flight at once are answered by fewer model calls, each correctly."""
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(predict_batch_window_ms=20)
    rows = _sample(24)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda row: client.post("/v1/predict", json=row), rows))

    assert [a.status_code for a in answers] == [200] * 24
    batch = client.post("/v1/predict/batch", json={"listings": rows}).json()["predictions"]
    assert [a.json()["price"] for a in answers] == [p["price"] for p in batch]
    metrics = client.get("/metrics").text
    calls = _metric(metrics, "price_alchemy_model_batch_rows_count")
    rows_scored = _metric(metrics, "price_alchemy_model_batch_rows_sum")
    assert rows_scored == 24 + 24
    assert calls < 24  # coalesced: fewer model calls than single requests (+1 for the batch)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_each_listing_gets_the_width_of_its_own_segments(client: TestClient, registry: Registry) -> None:
    plain = {**LISTING, "brand_name": None, "item_description": "", "item_condition_id": 5, "shipping": 0}
    response = client.post("/v1/predict/batch", json={"listings": [LISTING, plain]})

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    scale = ListingScale.from_profile(registry.interval["scale"])
    assert scale is not None
    mlflow.set_tracking_uri(registry.tracking_uri)
    prices = np.asarray(_direct_prices(registry, [LISTING, plain]), dtype=np.float64)
    widths = scale.of(pd.DataFrame([LISTING, plain]), prices)
    assert abs(widths[0] / widths[1] - 1) > 0.02, "the two listings' segments should differ in difficulty"
    spread = registry.interval["log_residual_high"] - registry.interval["log_residual_low"]
    for prediction, width in zip(predictions, widths, strict=True):
        low, high = prediction["price_range"]["low"], prediction["price_range"]["high"]
        assert math.log1p(high) - math.log1p(low) == pytest.approx(spread * width, abs=0.01)
