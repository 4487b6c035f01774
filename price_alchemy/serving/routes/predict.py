"""``POST /v1/predict`` and ``POST /v1/predict/batch``.

No ``from __future__ import annotations`` here: the batch body's model is built at run time (its
size limit comes from the settings), and FastAPI must see the real class, not a string.
"""

from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter

from price_alchemy import explain
from price_alchemy.serving.batching import BatchResult
from price_alchemy.serving.deps import ApiKey, Batcher, Context
from price_alchemy.serving.request_log import RequestContext
from price_alchemy.serving.schemas import (
    BatchPredictResponse,
    BatchRequest,
    ErrorBody,
    Explanation,
    Factor,
    Factors,
    ModelRef,
    Prediction,
    PredictRequest,
    PredictResponse,
    PriceRange,
    SimilarListing,
    ValidationErrorBody,
    batch_request_model,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key (only when a key is configured)."},
    413: {"model": ErrorBody, "description": "Body larger than max_body_bytes."},
    422: {
        "model": ValidationErrorBody,
        "description": "A field breaks a rule: the field and the rule are named.",
    },
    409: {
        "model": ErrorBody,
        "description": '"explain": true, but the served model cannot explain its prices.',
    },
    503: {"model": ErrorBody, "description": "No model loaded yet."},
}


def _explanation(found: explain.Explanation) -> Explanation:
    return Explanation(
        log_price=found.log_price,
        baseline=found.baseline,
        factors=Factors(
            up=[Factor(feature=k, effect=v) for k, v in found.up],
            down=[Factor(feature=k, effect=v) for k, v in found.down],
        ),
        others=found.others,
        similar=None if found.similar is None else [SimilarListing(**s) for s in found.similar],
        similar_unavailable=found.similar_unavailable,
    )


def _explained(predictions: list[Prediction], result: BatchResult) -> list[Prediction]:
    """The predictions with their explanations, when the request asked for them."""
    if result.explanations is not None:
        for prediction, found in zip(predictions, result.explanations, strict=True):
            prediction.explanation = _explanation(found)
    return predictions


def _record(ctx: RequestContext, rows: list[dict[str, Any]], result: BatchResult) -> list[Prediction]:
    """Round, add the range, keep it all for the request event; predictions in request order."""
    model = result.model
    prices = np.round(result.prices, 2)
    interval = model.meta.price_interval
    ctx.listings, ctx.prices, ctx.model = rows, prices, model.meta
    if interval is None:
        return [Prediction(price=float(p), price_range=None) for p in prices]
    listings = pd.DataFrame(rows) if interval.adaptive else None  # the range fits the listing
    lows, highs = (np.round(b, 2) for b in interval.bounds(result.prices, listings))
    ctx.lows, ctx.highs = lows, highs
    return [
        Prediction(
            price=float(p), price_range=PriceRange(low=float(lo), high=float(hi), coverage=interval.coverage)
        )
        for p, lo, hi in zip(prices, lows, highs, strict=True)
    ]


def _model_ref(result: BatchResult) -> ModelRef:
    m = result.model.meta
    return ModelRef(name=m.name, version=m.version, alias=m.alias)


def build_router(max_batch_size: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["predictions"], dependencies=[ApiKey], responses=ERRORS)
    batch_model = batch_request_model(max_batch_size)

    @router.post("/predict", response_model=PredictResponse)
    async def predict(listing: PredictRequest, batcher: Batcher, ctx: Context) -> PredictResponse:
        """Suggest a price and a calibrated price range for one listing (and why, if asked)."""
        rows = [listing.model_dump(exclude={"explain"})]
        ctx.batch_size = 1
        result = await batcher.predict(rows, explain=listing.explain)
        (prediction,) = _explained(_record(ctx, rows, result), result)
        return PredictResponse(
            request_id=ctx.request_id,
            model=_model_ref(result),
            price=prediction.price,
            price_range=prediction.price_range,
            explanation=prediction.explanation,
        )

    @router.post("/predict/batch", response_model=BatchPredictResponse)
    async def predict_batch(
        body: batch_model,  # type: ignore[valid-type]
        batcher: Batcher,
        ctx: Context,
    ) -> BatchPredictResponse:
        """Suggest prices and ranges for up to max_batch_size listings, in request order (and why, if asked)."""
        request: BatchRequest = body
        rows = [listing.model_dump() for listing in request.listings]
        ctx.batch_size = len(rows)
        result = await batcher.predict(rows, explain=request.explain)
        predictions = _explained(_record(ctx, rows, result), result)
        return BatchPredictResponse(
            request_id=ctx.request_id, model=_model_ref(result), predictions=predictions
        )

    return router
