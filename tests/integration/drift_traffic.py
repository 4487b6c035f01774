"""Request events shaped exactly like docs/request-events.md, built from synthetic listings.

Used by the drift-job, monitoring-DAG and dashboard-panel tests to put known traffic into a real
Elasticsearch node: undrifted traffic (the training generator, another seed) and drifted traffic
(the same generator with the condition and category mix shifted before pricing, so inputs and
predictions move together as they would in production).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from elasticsearch import Elasticsearch, helpers

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.schema import FEATURE_COLUMNS

Predict = Callable[[pd.DataFrame], np.ndarray]


def listing_fields(row: dict[str, Any], price: float) -> dict[str, Any]:
    """One entry of ``price_alchemy.listings`` as the API logs it."""
    category = row["category_name"]
    description = row["item_description"] or ""
    return {
        "item_condition_id": int(row["item_condition_id"]),
        "shipping": int(row["shipping"]),
        "category_name": category[:255] if isinstance(category, str) else None,
        "top_category": category.split("/")[0] if isinstance(category, str) and category else "(missing)",
        "brand_name": (row["brand_name"] or "(missing)")[:100]
        if isinstance(row["brand_name"], str)
        else "(missing)",
        "name": row["name"][:100],
        "name_length": len(row["name"]),
        "description_length": len(description) if isinstance(description, str) else 0,
        "price": round(float(price), 2),
        "price_low": round(float(price) * 0.7, 2),
        "price_high": round(float(price) * 1.4, 2),
    }


def request_event(
    at: datetime,
    listings: Sequence[dict[str, Any]],
    *,
    model_version: str = "1",
    status: int = 200,
    latency_ms: float = 12.0,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One ECS request event; failures carry ``error.*`` and no listings."""
    ok = 200 <= status < 300
    event: dict[str, Any] = {
        "@timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "ecs": {"version": "8.11.0"},
        "event": {
            "id": event_id or uuid.uuid4().hex,
            "kind": "event",
            "category": ["web"],
            "type": ["access"],
            "dataset": "price_alchemy.requests",
            "outcome": "success" if ok else "failure",
            "duration": int(latency_ms * 1_000_000),
        },
        "http": {"request": {"method": "POST"}, "response": {"status_code": status}},
        "url": {"path": "/v1/predict" if len(listings) <= 1 else "/v1/predict/batch"},
        "service": {"name": "price-alchemy-api", "version": "0.1.0"},
        "price_alchemy": {
            "route": "predict" if len(listings) <= 1 else "predict_batch",
            "latency_ms": float(latency_ms),
            "batch_size": len(listings),
        },
    }
    if ok:
        event["price_alchemy"]["model"] = {
            "name": "price-alchemy",
            "version": model_version,
            "alias": "champion",
        }
        event["price_alchemy"]["listings"] = list(listings)
    else:
        event["error"] = {"type": "HTTPException", "message": "invalid listing"}
    return event


def shift_listings(listings: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Drifted inputs: mostly worn Electronics (category, condition and, through them, brand/price)."""
    rng = np.random.default_rng(seed)
    pool = generate_listings(len(listings) * 12, seed=seed + 1000, start_id=9 * 10**8)
    electronics = pool[pool["category_name"].fillna("").str.startswith("Electronics/")]
    picked = electronics.sample(n=min(len(listings), len(electronics)), random_state=seed).reset_index(
        drop=True
    )
    picked["item_condition_id"] = rng.choice([3, 4, 5], size=len(picked), p=[0.3, 0.4, 0.3])
    return picked


def traffic(
    listings: pd.DataFrame,
    predict: Predict,
    start: datetime,
    end: datetime,
    *,
    model_version: str,
    batch_every: int = 10,
) -> list[dict[str, Any]]:
    """Events spreading ``listings`` evenly over ``[start, end)``; every ``batch_every``-th request
    is a batch of three listings (the rest single ones), as an app's traffic would mix them."""
    prices = predict(listings[list(FEATURE_COLUMNS)])
    rows = listings.to_dict("records")
    groups: list[list[int]] = []
    i = 0
    while i < len(rows):
        size = 3 if len(groups) % batch_every == batch_every - 1 else 1
        groups.append(list(range(i, min(i + size, len(rows)))))
        i += size
    step = (end - start) / max(len(groups), 1)
    return [
        request_event(
            start + step * k,
            [listing_fields(rows[j], prices[j]) for j in group],
            model_version=model_version,
            latency_ms=5.0 + (k % 50),
        )
        for k, group in enumerate(groups)
    ]


def index_events(client: Elasticsearch, events: Iterable[dict[str, Any]]) -> int:
    """Index into the daily request indices by ``event.id`` (as the shipper does); refresh."""
    actions = [
        {
            "_op_type": "create",
            "_index": f"price-alchemy-requests-{e['@timestamp'][:10].replace('-', '.')}",
            "_id": e["event"]["id"],
            "_source": e,
        }
        for e in events
    ]
    ok, _ = helpers.bulk(client, actions, refresh="wait_for")
    return int(ok)


def window(end: datetime, hours: float) -> tuple[datetime, datetime]:
    return end - timedelta(hours=hours), end
