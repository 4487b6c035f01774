"""The FastAPI app factory and its lifespan (model load, watcher, batcher, event log)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from price_alchemy import __version__, mlflow_store
from price_alchemy.config import Settings, get_settings
from price_alchemy.serving.batching import MicroBatcher
from price_alchemy.serving.deps import ServingState
from price_alchemy.serving.handlers import install_handlers
from price_alchemy.serving.metrics import ServingMetrics
from price_alchemy.serving.middleware import RequestMiddleware
from price_alchemy.serving.request_log import RequestEventLog
from price_alchemy.serving.routes import health, model, predict
from price_alchemy.serving.shared_home import SharedHomeModelStore

log = logging.getLogger(__name__)

DESCRIPTION = """Price suggestions for second-hand listings (Mercari format).

The model is the MLflow registry's `champion` (watched and hot-swapped). Every prediction comes
with a calibrated price range. When `PRICE_ALCHEMY_API_KEY` is set, `/v1` routes need the
`X-API-Key` header. See docs/serving.md.
"""


def create_app(settings: Settings | None = None, *, watch: bool = True) -> FastAPI:
    """The API for ``settings`` (default: the process settings); ``watch=False`` skips the watcher."""
    settings = settings or get_settings()
    state = ServingState(settings=settings, metrics=ServingMetrics(settings.prometheus_multiproc_dir))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mlflow_store.serving_defaults()
        settings.ensure_home()
        store = SharedHomeModelStore(
            settings,
            on_swap=state.metrics.model_swapped,
            on_failure=state.metrics.model_refresh_failures.inc,
        )
        await asyncio.to_thread(store.load_initial)
        if watch:
            store.start_watcher()
        batcher = MicroBatcher(
            store,
            max_rows=settings.max_batch_size,
            window_s=settings.predict_batch_window_ms / 1000,
            on_batch=state.metrics.batch_rows.observe,
        )
        batcher.start()
        state.store, state.batcher = store, batcher
        state.events = RequestEventLog(settings, state.metrics) if settings.request_log_enabled else None
        try:
            yield
        finally:
            state.batcher = None
            await batcher.stop()
            await asyncio.to_thread(store.stop_watcher)
            if state.events is not None:
                state.events.close()
                state.events = None
            state.metrics.worker_stopped()

    app = FastAPI(
        title="Price Alchemy API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=state.metrics,
        event_log=lambda: state.events,
    )
    install_handlers(app)
    app.include_router(predict.build_router(settings.max_batch_size))
    app.include_router(model.router)
    app.include_router(health.router)
    return app
