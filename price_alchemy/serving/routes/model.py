"""``GET /v1/model``: which model answers, and (to a caller with the API key) why a load failed."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from price_alchemy.serving.deps import ApiKey, Context, SettingsDep, Store
from price_alchemy.serving.handlers import NOT_READY_MESSAGE, RETRY_AFTER, hide_detail
from price_alchemy.serving.schemas import (
    ErrorBody,
    IntervalInfo,
    ModelInfo,
    ModelUnavailableBody,
)

router = APIRouter(
    prefix="/v1",
    tags=["model"],
    dependencies=[ApiKey],
    responses={
        401: {"model": ErrorBody},
        500: {"model": ErrorBody, "description": "Unexpected error: details in the server log."},
        503: {"model": ModelUnavailableBody, "description": "No model loaded; the reason with the API key."},
    },
)


@router.get("/model", response_model=ModelInfo)
async def model_info(store: Store, settings: SettingsDep, ctx: Context) -> ModelInfo | Response:
    """Name, version, alias, training time, test RMSLE, range calibration; why a load failed (API key only)."""
    # The load error names internal hosts and paths: shown only to a caller who proved the API key
    # (ApiKey ran first); without a configured key every caller is anonymous and reads the log instead.
    load_error = store.last_error if settings.api_key is not None else None
    model = store.current
    if model is None:
        hide_detail(
            ctx, 503, "model_not_ready", "ModelNotReadyError", store.last_error or "no model loaded yet"
        )
        body = ModelUnavailableBody(
            detail=NOT_READY_MESSAGE, type="model_not_ready", request_id=ctx.request_id, load_error=load_error
        )
        return JSONResponse(body.model_dump(), status_code=503, headers=RETRY_AFTER)
    m = model.meta
    interval = m.price_interval
    return ModelInfo(
        name=m.name,
        version=m.version,
        alias=m.alias,
        run_id=m.run_id,
        trained_at=m.trained_at,
        test_rmsle=m.test_rmsle,
        price_interval=IntervalInfo(
            coverage=interval.coverage,
            log_residual_low=interval.log_residual_low,
            log_residual_high=interval.log_residual_high,
            method=interval.method,
            adaptive=interval.adaptive,
        )
        if interval
        else None,
        source="cache" if model.source == "cache" else "registry",
        loaded_at=model.loaded_at,
        load_error=load_error,
        refused_version=store.refused_version,
    )
