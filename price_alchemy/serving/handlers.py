"""Errors -> HTTP answers: every refusal names what was wrong; the request event records it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from price_alchemy.errors import AuthenticationError, ModelNotReadyError, PredictionError
from price_alchemy.serving.deps import API_KEY_HEADER
from price_alchemy.serving.middleware import BodyTooLargeError, request_context

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


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    name = "BodyTooLargeError" if isinstance(exc, BodyTooLargeError) else f"HTTP{exc.status_code}"
    request_context(request.scope).fail(name, detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    request_context(request.scope).fail(type(exc).__name__, str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
    request_context(request.scope).fail(type(exc).__name__, str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": API_KEY_HEADER})


async def _prediction_failed(request: Request, exc: Exception) -> JSONResponse:
    request_context(request.scope).fail(type(exc).__name__, str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=500)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ModelNotReadyError, _not_ready)
    app.add_exception_handler(AuthenticationError, _unauthorized)
    app.add_exception_handler(PredictionError, _prediction_failed)
