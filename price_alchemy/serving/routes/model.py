"""``GET /v1/model``: which model answers."""

from __future__ import annotations

from fastapi import APIRouter

from price_alchemy.serving.deps import ApiKey, CurrentModel
from price_alchemy.serving.schemas import ErrorBody, IntervalInfo, ModelInfo

router = APIRouter(
    prefix="/v1",
    tags=["model"],
    dependencies=[ApiKey],
    responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody, "description": "No model loaded yet."}},
)


@router.get("/model", response_model=ModelInfo)
async def model_info(model: CurrentModel) -> ModelInfo:
    """Name, version, alias, training time, test RMSLE and price-range calibration of the served model."""
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
        )
        if interval
        else None,
        source="cache" if model.source == "cache" else "registry",
        loaded_at=model.loaded_at,
    )
