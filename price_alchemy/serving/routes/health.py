"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from price_alchemy.serving.deps import State
from price_alchemy.serving.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process answers."""
    return Health(status="alive")


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(state: State) -> Response:
    """Ready only when a model is loaded (503 otherwise)."""
    model = state.store.current if state.store is not None else None
    if model is None or state.batcher is None:
        detail = state.store.last_error if state.store is not None else None
        body = Health(status="not ready", detail=detail or "no model loaded yet")
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ready", model_version=model.meta.version).model_dump())


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: State) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
