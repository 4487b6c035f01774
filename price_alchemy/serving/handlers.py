"""Errors -> HTTP answers: a client error names what was wrong; a server error says nothing internal.

A 4xx tells the client what it sent wrong (422 names its own field). A 5xx answers with a public
message, a stable ``type`` and the request id; the exception text, which can name internal hosts
and paths, goes only to the server log and the request event (``error.message``), both under the
request id. See docs/serving.md, "Errors".
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from price_alchemy.errors import (
    AuthenticationError,
    ExplanationUnavailableError,
    ModelNotReadyError,
    PredictionError,
)
from price_alchemy.serving.deps import API_KEY_HEADER
from price_alchemy.serving.middleware import ERROR_MESSAGE_CUT, BodyTooLargeError, error_body, request_context
from price_alchemy.serving.request_log import RequestContext
from price_alchemy.serving.schemas import ErrorType

log = logging.getLogger(__name__)

NOT_READY_MESSAGE = "no model is loaded; retry later"
PREDICTION_FAILED_MESSAGE = "the model could not price the listings"
RETRY_AFTER = {"Retry-After": "5"}
_HTTP_TYPES: dict[int, ErrorType] = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}

MAX_ERRORS = 20  # a 1000-listing batch may break the same rule 1000 times; the first ones suffice


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``{field, type, msg, loc, ctx}``, without echoing the input back."""
    out = []
    for error in exc.errors()[:MAX_ERRORS]:
        loc = list(error.get("loc", ()))
        if error.get("type") == "json_invalid":  # loc is ("body", character offset)
            loc = ["body"]
        loc = [part for part in loc if part != "body"] or ["body"]
        ctx = {k: v for k, v in (error.get("ctx") or {}).items() if isinstance(v, str | int | float | bool)}
        out.append(
            {
                "field": ".".join(str(part) for part in loc),
                "type": str(error.get("type", "invalid")),
                "msg": str(error.get("msg", "")),
                "loc": [p if isinstance(p, int) else str(p) for p in loc],
                "ctx": ctx or None,
            }
        )
    return out


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    summary = "; ".join(f"{e['field']}: {e['type']}: {e['msg']}" for e in errors)
    request_context(request.scope).fail("RequestValidationError", summary[:1000])
    return JSONResponse({"detail": errors}, status_code=422)


def hide_detail(
    ctx: RequestContext, status: int, error_type: ErrorType, error_name: str, detail: str
) -> None:
    """Keep a server error's internal ``detail`` for the operators: the log and the request event."""
    ctx.fail(error_name, detail[:ERROR_MESSAGE_CUT])
    level = logging.WARNING if status == 503 else logging.ERROR  # 503: waiting for a model, not a bug
    log.log(level, "request %s: %d %s: %s", ctx.request_id, status, error_type, detail)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    ctx = request_context(request.scope)
    detail = str(exc.detail)  # ours (BodyTooLargeError) or Starlette's ("Not Found"): nothing internal
    name = "BodyTooLargeError" if isinstance(exc, BodyTooLargeError) else f"HTTP{exc.status_code}"
    ctx.fail(name, detail)
    error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
    return JSONResponse(error_body(ctx, error_type, detail), status_code=exc.status_code, headers=exc.headers)


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    ctx = request_context(request.scope)
    hide_detail(ctx, 503, "model_not_ready", type(exc).__name__, str(exc))
    return JSONResponse(
        error_body(ctx, "model_not_ready", NOT_READY_MESSAGE), status_code=503, headers=RETRY_AFTER
    )


async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
    ctx = request_context(request.scope)
    ctx.fail(type(exc).__name__, str(exc))  # the generic "missing or invalid" text: which one stays unsaid
    return JSONResponse(
        error_body(ctx, "unauthorized", str(exc)),
        status_code=401,
        headers={"WWW-Authenticate": API_KEY_HEADER},
    )


async def _prediction_failed(request: Request, exc: Exception) -> JSONResponse:
    ctx = request_context(request.scope)
    hide_detail(ctx, 500, "prediction_failed", type(exc).__name__, str(exc))
    return JSONResponse(error_body(ctx, "prediction_failed", PREDICTION_FAILED_MESSAGE), status_code=500)


async def _unexplained(request: Request, exc: Exception) -> JSONResponse:
    """409: the served model cannot explain (the message names the model part, nothing internal)."""
    ctx = request_context(request.scope)
    ctx.fail(type(exc).__name__, str(exc)[:ERROR_MESSAGE_CUT])
    return JSONResponse(error_body(ctx, "explanation_unavailable", str(exc)), status_code=409)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ModelNotReadyError, _not_ready)
    app.add_exception_handler(AuthenticationError, _unauthorized)
    app.add_exception_handler(PredictionError, _prediction_failed)
    app.add_exception_handler(ExplanationUnavailableError, _unexplained)
