"""Request events built by the API's own event builder, from synthetic listings.

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
from price_alchemy.serving.model_store import ModelMetadata
from price_alchemy.serving.request_log import RequestContext, build_event

Predict = Callable[[pd.DataFrame], np.ndarray]


def request_event(
    at: datetime,
    rows: Sequence[dict[str, Any]],
    prices: Sequence[float] = (),
    *,
    model_version: str = "1",
    status: int = 200,
    latency_ms: float = 12.0,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The API's own event (``serving.request_log.build_event``) for a request with these listings
    (raw feature dicts) and predicted prices; failures carry ``error.*`` and no listings."""
    ok = 200 <= status < 300
    ctx = RequestContext(request_id=event_id or uuid.uuid4().hex, received_at=at, batch_size=len(rows))
    if ok:
        price = np.round(np.asarray(prices, dtype=float), 2)
        ctx.listings, ctx.prices = list(rows), price
        ctx.lows, ctx.highs = np.round(price * 0.7, 2), np.round(price * 1.4, 2)
        ctx.model = ModelMetadata("price-alchemy", model_version, "champion", None, None, None, None)
    else:
        ctx.fail("RequestValidationError", "item_condition_id: Input should be less than or equal to 5")
    route = "predict" if len(rows) <= 1 else "predict_batch"
    path = {"predict": "/v1/predict", "predict_batch": "/v1/predict/batch"}[route]
    return build_event(
        ctx, route=route, path=path, method="POST", status=status, duration_ns=int(latency_ms * 1_000_000)
    )


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
    features = [{c: _present(row[c]) for c in FEATURE_COLUMNS} for row in rows]
    return [
        request_event(
            start + step * k,
            [features[j] for j in group],
            [float(prices[j]) for j in group],
            model_version=model_version,
            latency_ms=5.0 + (k % 50),
        )
        for k, group in enumerate(groups)
    ]


def _present(value: Any) -> Any:
    """A frame's missing value (NaN/None) as the API sees an absent field (None); numpy ints as int."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


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
