"""Dependencies of the routes, as ``Annotated`` aliases: settings, state, model, API key, context."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from price_alchemy.config import Settings
from price_alchemy.errors import AuthenticationError, ModelNotReadyError
from price_alchemy.serving.batching import MicroBatcher
from price_alchemy.serving.metrics import ServingMetrics
from price_alchemy.serving.middleware import request_context
from price_alchemy.serving.model_store import LoadedModel, ModelStore
from price_alchemy.serving.request_log import RequestContext, RequestEventLog

API_KEY_HEADER = "X-API-Key"


@dataclass
class ServingState:
    """What the app holds while it runs; the lifespan fills the store, batcher and event log."""

    settings: Settings
    metrics: ServingMetrics
    store: ModelStore | None = None
    batcher: MicroBatcher | None = None
    events: RequestEventLog | None = None


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


async def get_settings_dep(state: State) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_batcher(state: State) -> MicroBatcher:
    if state.batcher is None:
        raise ModelNotReadyError("the service is starting")
    return state.batcher


Batcher = Annotated[MicroBatcher, Depends(get_batcher)]


async def get_store(state: State) -> ModelStore:
    if state.store is None:
        raise ModelNotReadyError("the service is starting")
    return state.store


Store = Annotated[ModelStore, Depends(get_store)]


async def get_current_model(store: Store) -> LoadedModel:
    model = store.current
    if model is None:
        raise ModelNotReadyError(f"no model loaded: {store.last_error or 'still starting'}")
    return model


CurrentModel = Annotated[LoadedModel, Depends(get_current_model)]


async def get_request_context(request: Request) -> RequestContext:
    return request_context(request.scope)


Context = Annotated[RequestContext, Depends(get_request_context)]

_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Required when the server has PRICE_ALCHEMY_API_KEY set.",
)


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_scheme)] = None
) -> None:
    """Refuse the request unless auth is off or the header matches (constant-time comparison)."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    if key is None or not secrets.compare_digest(key.encode(), expected):
        raise AuthenticationError(f"missing or invalid {API_KEY_HEADER} header")


ApiKey = Depends(require_api_key)
