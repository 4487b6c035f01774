"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call them).

Open to anyone, so a not-ready answer says only that no model is loaded: why (registry errors with
host names, cache paths) goes to the server log under the request id, and to ``/v1/model``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from price_alchemy.serving.deps import Context, State
from price_alchemy.serving.handlers import NOT_READY_MESSAGE, RETRY_AFTER, hide_detail
from price_alchemy.serving.schemas import Health, NotReadyBody

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process answers."""
    return Health(status="alive")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": NotReadyBody, "description": "No model loaded (why: server log, /v1/model)."}},
)
async def ready(state: State, ctx: Context) -> Response:
    """Ready only when a model is loaded (503 otherwise)."""
    model = state.store.current if state.store is not None else None
    if model is None or state.batcher is None:
        if state.store is None:
            reason = "the service is starting"
        elif model is None:
            reason = state.store.last_error or "no model loaded yet"
        else:
            reason = "the prediction worker is not running"
        hide_detail(ctx, 503, "model_not_ready", "ModelNotReadyError", reason)
        body = NotReadyBody(detail=NOT_READY_MESSAGE, type="model_not_ready", request_id=ctx.request_id)
        return JSONResponse(body.model_dump(), status_code=503, headers=RETRY_AFTER)
    return JSONResponse(Health(status="ready", model_version=model.meta.version).model_dump())


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: State) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
