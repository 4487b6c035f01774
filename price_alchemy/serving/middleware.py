"""The one ASGI middleware: request id, body-size limit, metrics, the request event, the last 500.

Pure ASGI (no ``BaseHTTPMiddleware``, which costs a task and a stream per request). It wraps
every HTTP request; prediction routes also get their ECS event written once the response is
sent, whatever the status, including bodies refused before routing. Requests refused before
authentication (401, 413, 400) are always counted in the metrics, but write their events only
within ``request_log_refused_per_minute`` (see :class:`RequestEventLog`).

An exception no handler translated is answered here with a generic 500 (request id in the body
and the header, the traceback in the server log under that id). Starlette's own last-resort
handler sits outside this middleware: its answer would carry no request id and no event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from price_alchemy.serving.metrics import ServingMetrics
from price_alchemy.serving.request_log import (
    PREDICTION_ROUTES,
    REFUSED_STATUSES,
    RequestContext,
    RequestEventLog,
    build_event,
)
from price_alchemy.serving.schemas import ErrorBody, ErrorType

log = logging.getLogger(__name__)

CONTEXT_KEY = "price_alchemy.request"
#: Internal error text kept in the request event (``error.message``); the log line has all of it.
ERROR_MESSAGE_CUT = 2000
INTERNAL_ERROR_MESSAGE = "internal server error"


class BodyTooLargeError(HTTPException):
    """A body longer than ``max_body_bytes`` (an HTTPException so FastAPI's body reader re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of max_body_bytes={limit} bytes")


def request_context(scope: Scope) -> RequestContext:
    """The request's context (the middleware always sets one; a bare app gets a fresh one)."""
    ctx = scope.get(CONTEXT_KEY)
    if ctx is None:
        ctx = scope[CONTEXT_KEY] = RequestContext()
    return ctx


def error_body(ctx: RequestContext, error_type: ErrorType, detail: str) -> dict[str, Any]:
    """The JSON of an error answer: a public ``detail``, the stable ``type`` and the request id."""
    return ErrorBody(detail=detail, type=error_type, request_id=ctx.request_id).model_dump()


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: ServingMetrics,
        event_log: Callable[[], RequestEventLog | None],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.event_log = event_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext()
        scope[CONTEXT_KEY] = ctx
        status = 500
        started = False
        request_id_header = (b"x-request-id", ctx.request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), request_id_header]
            await send(message)

        try:
            refused = self._refuse_by_length(scope)
            if refused is not None:
                status, reason = refused  # both tell the client what it sent wrong: nothing internal
                error_type: ErrorType = "body_too_large" if status == 413 else "invalid_content_length"
                ctx.fail("BodyTooLargeError" if status == 413 else "InvalidContentLength", reason)
                await _send_json(send_with_id, status, error_body(ctx, error_type, reason))
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception as exc:
            status = 500
            ctx.fail(type(exc).__name__, str(exc)[:ERROR_MESSAGE_CUT])
            log.exception("request %s: 500 internal_error: %s: %s", ctx.request_id, type(exc).__name__, exc)
            if started:  # too late for an answer: let the server drop the connection
                raise
            await _send_json(send_with_id, 500, error_body(ctx, "internal_error", INTERNAL_ERROR_MESSAGE))
        finally:
            self._finish(scope, ctx, status)

    def _refuse_by_length(self, scope: Scope) -> tuple[int, str] | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return 400, "Content-Length header is not an integer"
                if length > self.max_body_bytes:
                    return 413, BodyTooLargeError(self.max_body_bytes).detail
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body (e.g. chunked, no Content-Length) growing past the limit."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        return limited

    def _finish(self, scope: Scope, ctx: RequestContext, status: int) -> None:
        duration_ns = time.perf_counter_ns() - ctx.started_ns
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(template, scope["method"], str(status)).inc()
        self.metrics.latency.labels(template).observe(duration_ns / 1e9)
        path = scope["path"]
        name = PREDICTION_ROUTES.get(path)
        if name is None:
            return
        if 200 <= status < 300 and ctx.prices is not None:
            self.metrics.listings.labels(name).inc(len(ctx.prices))
        events = self.event_log()
        if events is None:
            return
        try:
            event = build_event(
                ctx, route=name, path=path, method=scope["method"], status=status, duration_ns=duration_ns
            )
        except Exception as exc:  # never let logging break an answered request
            log.exception("cannot build the request event for %s", ctx.request_id)
            events.dropped("build_failed", None, exc)
            return
        events.write(event, refused=status in REFUSED_STATUSES)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
