"""``"explain": true``: why this price, on the session's trained model, through the real app."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_helpers import LISTING, AppFactory, Registry

from price_alchemy.explain import NO_REFERENCES, Explainer
from price_alchemy.names import PROFILE_ARTIFACT, REFERENCE_LISTINGS
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.similar import MAX_REFERENCE_ROWS
from price_alchemy.training.stages import prepare_split

pytestmark = pytest.mark.api

SIMILAR_FIELDS = {"name", "brand_name", "category_name", "item_condition_id", "price", "similarity"}


def _check(explanation: dict[str, Any], price: float) -> None:
    """Sorted, signed factors that add up to the log-price the price comes from."""
    up, down = explanation["factors"]["up"], explanation["factors"]["down"]
    assert 0 < len(up) <= 5 and 0 < len(down) <= 5
    ups, downs = [f["effect"] for f in up], [f["effect"] for f in down]
    assert all(e > 0 for e in ups) and ups == sorted(ups, reverse=True)
    assert all(e < 0 for e in downs) and downs == sorted(downs)
    assert all(isinstance(f["feature"], str) and ": " in f["feature"] for f in up + down)
    total = explanation["baseline"] + sum(ups) + sum(downs) + explanation["others"]
    assert total == pytest.approx(explanation["log_price"], abs=1e-9)
    assert price == pytest.approx(math.expm1(max(explanation["log_price"], 0.0)), abs=0.006)


def test_without_explain_the_answer_is_unchanged(client: TestClient) -> None:
    plain = client.post("/v1/predict", json=LISTING)
    explicit = client.post("/v1/predict", json={**LISTING, "explain": False})
    assert plain.status_code == explicit.status_code == 200
    assert set(plain.json()) == {"request_id", "model", "price", "price_range"}
    assert set(explicit.json()) == set(plain.json()) and explicit.json()["price"] == plain.json()["price"]
    batch = client.post("/v1/predict/batch", json={"listings": [LISTING, LISTING]}).json()
    assert [set(p) for p in batch["predictions"]] == [{"price", "price_range"}] * 2


def test_an_explained_prediction(client: TestClient) -> None:
    plain = client.post("/v1/predict", json=LISTING).json()
    response = client.post("/v1/predict", json={**LISTING, "explain": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["price"] == plain["price"] and body["price_range"] == plain["price_range"]
    explanation = body["explanation"]
    _check(explanation, body["price"])
    features = [f["feature"] for f in explanation["factors"]["up"] + explanation["factors"]["down"]]
    assert len(set(features)) == len(features)
    similar = explanation["similar"]
    assert explanation["similar_unavailable"] is None and len(similar) == 5
    assert all(set(s) == SIMILAR_FIELDS for s in similar)
    sims = [s["similarity"] for s in similar]
    assert sims == sorted(sims, reverse=True) and 0 < sims[-1] <= sims[0] <= 1.0 + 1e-6
    assert all(s["price"] > 0 and 1 <= s["item_condition_id"] <= 5 for s in similar)


def test_a_training_listing_is_its_own_nearest_listing(
    client: TestClient, synthetic_listings: pd.DataFrame, params: Params
) -> None:
    train = prepare_split(synthetic_listings, params).train
    for _, row in train.head(3).iterrows():
        listing = {
            c: (None if isinstance(v, float) and math.isnan(v) else v)
            for c, v in row[list(FEATURE_COLUMNS)].items()
        }
        listing["item_condition_id"], listing["shipping"] = (
            int(listing["item_condition_id"]),
            int(listing["shipping"]),
        )
        body = client.post("/v1/predict", json={**listing, "explain": True}).json()
        first = body["explanation"]["similar"][0]
        assert (first["name"], first["price"]) == (row["name"], row[PRICE])
        assert first["similarity"] == pytest.approx(1.0, abs=1e-3)


def test_an_explained_batch(client: TestClient) -> None:
    other = {
        **LISTING,
        "name": "Apple iPhone 7 32GB",
        "brand_name": "Apple",
        "category_name": "Electronics/Cell Phones & Accessories/Cell Phones & Smartphones",
    }
    response = client.post("/v1/predict/batch", json={"listings": [LISTING, other], "explain": True})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for prediction in predictions:
        _check(prediction["explanation"], prediction["price"])
    assert predictions[0]["explanation"] != predictions[1]["explanation"]
    single = client.post("/v1/predict", json={**other, "explain": True}).json()
    assert single["explanation"] == predictions[1]["explanation"]  # same model, same listing, same answer


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [True], {"on": True}])
def test_a_non_boolean_explain_is_a_422_naming_it(client: TestClient, value: Any) -> None:
    for path, body in (
        ("/v1/predict", {**LISTING, "explain": value}),
        ("/v1/predict/batch", {"listings": [LISTING], "explain": value}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, value)
        (error,) = response.json()["detail"]
        assert (error["field"], error["type"]) == ("explain", "bool_type")


def test_explain_inside_a_batch_listing_is_refused(client: TestClient) -> None:
    response = client.post("/v1/predict/batch", json={"listings": [{**LISTING, "explain": True}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "listings.0.explain"


def test_the_schema_documents_explain(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["explain"]["type"] == "boolean"
    assert schemas["BatchPredictRequest"]["properties"]["explain"]["default"] is False
    assert {**LISTING, "explain": True}.keys() == schemas["PredictRequest"]["examples"][1].keys()
    assert "409" in spec["paths"]["/v1/predict"]["post"]["responses"]
    assert set(schemas["SimilarListing"]["properties"]) == SIMILAR_FIELDS


def test_the_profile_keeps_bounded_reference_listings(registry: Registry, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    profile = json.loads(
        Path(client.download_artifacts(registry.run_id, PROFILE_ARTIFACT, str(tmp_path))).read_text()
    )
    section = profile[REFERENCE_LISTINGS]
    assert section["source"] == "text" and 0 < len(section["rows"]) <= MAX_REFERENCE_ROWS
    assert set(section["rows"][0]) == SIMILAR_FIELDS - {"similarity"} | {"shipping", "item_description"}


def _swap(client: TestClient, **changes: Any) -> None:
    store = client.app.state.serving.store  # type: ignore[attr-defined]
    store._current = dataclasses.replace(store.current, **changes)


def test_a_model_without_reference_listings_explains_without_similar(client: TestClient) -> None:
    _swap(client, explainer=Explainer(client.app.state.serving.store.current.pipeline))  # type: ignore[attr-defined]
    body = client.post("/v1/predict", json={**LISTING, "explain": True}).json()
    assert body["explanation"]["similar"] is None
    assert body["explanation"]["similar_unavailable"] == NO_REFERENCES
    _check(body["explanation"], body["price"])


def test_a_model_that_cannot_explain_answers_409_and_still_prices(client: TestClient) -> None:
    _swap(client, explainer=None, explain_error="price-alchemy v9 cannot explain its prices (TypeError)")
    response = client.post("/v1/predict", json={**LISTING, "explain": True})
    assert response.status_code == 409
    assert response.json()["type"] == "explanation_unavailable"
    assert "cannot explain" in response.json()["detail"]
    assert client.post("/v1/predict", json=LISTING).status_code == 200


def test_the_cached_model_keeps_its_reference_listings(make_client: AppFactory) -> None:
    make_client()  # loads from the registry and fills the local cache
    offline = make_client(mlflow_tracking_uri="http://127.0.0.1:9")  # nothing listens: the cache serves
    assert offline.get("/v1/model").json()["source"] == "cache"
    body = offline.post("/v1/predict", json={**LISTING, "explain": True}).json()
    assert len(body["explanation"]["similar"]) == 5


def test_explained_and_plain_requests_share_a_model_call(client: TestClient) -> None:
    """Only the request that asked is explained; both are priced by one model call."""
    import asyncio

    from price_alchemy.serving.batching import MicroBatcher

    store = client.app.state.serving.store  # type: ignore[attr-defined]
    calls: list[int] = []
    listing = {c: LISTING[c] for c in FEATURE_COLUMNS}

    async def both() -> tuple[Any, Any]:
        batcher = MicroBatcher(store, max_rows=10, window_s=0.05, on_batch=calls.append)
        batcher.start()
        try:
            return await asyncio.gather(batcher.predict([listing]), batcher.predict([listing], explain=True))
        finally:
            await batcher.stop()

    plain, explained = asyncio.run(both())
    assert calls == [2]
    assert plain.explanations is None and explained.explanations is not None
    assert plain.prices.tolist() == explained.prices.tolist()
    assert len(explained.explanations) == 1 and explained.explanations[0].up
