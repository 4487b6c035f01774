"""Where the shipper delivers request events: Elasticsearch (bulk API) or a Logstash HTTP input.

A sink takes a batch of events in log order and says, for each, whether it is delivered, must be
retried, or can never be delivered (dead letter). A failure of the whole request (connection
refused, timeout, 429, 5xx) raises :class:`TransientError`: the shipper backs off and resends the
same batch. Delivery is idempotent because every document has ``_id = event.id`` and is created
with ``op_type=create``: a replay gets ``409 version_conflict`` for what already arrived, which
counts as delivered, so a batch can be sent any number of times and each event is indexed once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from price_alchemy.errors import InvalidEventError, TransientError
from price_alchemy.monitoring.templates import ensure_templates
from price_alchemy.names import REQUESTS_INDEX_PREFIX

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "duplicate", "retry", "rejected"]


@dataclass(frozen=True)
class ItemResult:
    outcome: Outcome
    status: int | None = None
    reason: str | None = None


class LoggedEvent(dict[str, Any]):
    """What the shipper decodes of an event (``@timestamp`` and ``event.id``: where it goes) and
    its line from the log, which is sent as the document as it is (never re-encoded)."""

    __slots__ = ("line",)

    def __init__(self, fields: dict[str, Any], line: bytes) -> None:
        super().__init__(fields)
        self.line = line


def envelope(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event that decide where it is indexed (the rest stays in its line)."""
    kept: dict[str, Any] = {key: event[key] for key in ("@timestamp",) if key in event}
    if "event" in event:
        inner = event["event"]
        kept["event"] = {"id": inner["id"]} if isinstance(inner, dict) and "id" in inner else inner
    return kept


def _document(event: dict[str, Any]) -> Any:
    return event.line if isinstance(event, LoggedEvent) else event


def event_id(event: dict[str, Any]) -> str:
    """The request id (``event.id``), the document id that makes delivery idempotent."""
    ident = (event.get("event") or {}).get("id") if isinstance(event.get("event"), dict) else None
    if not isinstance(ident, str) or not ident.strip():
        raise InvalidEventError("no event.id")
    if len(ident.encode()) > 512:  # Elasticsearch's limit for _id
        raise InvalidEventError("event.id longer than 512 bytes")
    return ident


def event_time(event: dict[str, Any]) -> datetime:
    """``@timestamp`` as an aware UTC datetime (a naive one is taken as UTC)."""
    raw = event.get("@timestamp")
    if not isinstance(raw, str):
        raise InvalidEventError("no @timestamp")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidEventError(f"bad @timestamp {raw[:40]!r}") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def index_name(event: dict[str, Any], prefix: str = REQUESTS_INDEX_PREFIX) -> str:
    """Daily index of the event's UTC day: ``price-alchemy-requests-YYYY.MM.DD``."""
    return f"{prefix}-{event_time(event):%Y.%m.%d}"


def bulk_operations(events: list[dict[str, Any]]) -> list[Any]:
    """Bulk API body: a ``create`` action with index and id, then the document, per event."""
    ops: list[Any] = []
    for event in events:
        ops.append({"create": {"_index": index_name(event), "_id": event_id(event)}})
        ops.append(_document(event))  # a logged line goes as it is: no decode-encode round trip
    return ops


def classify_item(item: dict[str, Any]) -> ItemResult:
    """One bulk response item: 2xx delivered, 409 already there, 400 never indexable, else retry."""
    body = next(iter(item.values()))
    status = int(body.get("status", 0))
    if 200 <= status < 300:
        return ItemResult("delivered", status)
    error = body.get("error") or {}
    reason = (
        f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
        if isinstance(error, dict)
        else str(error)
    )
    if status == 409:
        return ItemResult("duplicate", status, reason)
    if status == 400:  # mapping rejection, unparsable field: the same document will always fail
        return ItemResult("rejected", status, reason)
    return ItemResult("retry", status, reason)  # 429 (queue full), 5xx, 403 blocked index, ...


class Sink(Protocol):
    name: str

    def prepare(self) -> None:
        """Whatever must exist before the first event (index templates); TransientError if down."""

    def send(self, events: list[dict[str, Any]]) -> list[ItemResult]:
        """Deliver valid events in order; one result per event; TransientError for the whole batch."""

    def close(self) -> None: ...


class ElasticsearchSink:
    """Bulk ``create`` into the daily request indices; templates are ensured before the first bulk."""

    name = "elasticsearch"

    def __init__(self, client: Elasticsearch) -> None:
        self.client = client
        self._prepared = False

    def prepare(self) -> None:
        from elasticsearch import ApiError, TransportError

        if self._prepared:
            return
        try:
            ensure_templates(self.client)
        except (ApiError, TransportError) as exc:
            raise TransientError(f"cannot put index templates: {_short(exc)}") from exc
        self._prepared = True

    def send(self, events: list[dict[str, Any]]) -> list[ItemResult]:
        from elasticsearch import ApiError, TransportError

        self.prepare()
        try:
            response = self.client.bulk(operations=bulk_operations(events))
        except (ApiError, TransportError) as exc:
            raise TransientError(f"bulk request failed: {_short(exc)}") from exc
        items = response["items"]
        if len(items) != len(events):  # never expected; do not trust a partial answer
            raise TransientError(f"bulk answered {len(items)} items for {len(events)} events")
        return [classify_item(item) for item in items]

    def close(self) -> None:
        self.client.close()


class LogstashSink:
    """POST the batch as NDJSON to a Logstash ``http`` input; Logstash indexes with the same id rules.

    Logstash answers 200 once the events are in its (persistent) queue; 429 means the queue is
    full. A 200 confirms the whole batch, so every event is reported delivered; duplicates are
    resolved downstream by the ``create`` action on ``event.id``.
    """

    name = "logstash"

    def __init__(
        self, url: str, *, templates_client: Elasticsearch | None = None, timeout_s: float = 30.0
    ) -> None:
        import httpx

        self.url = url
        self._http = httpx.Client(timeout=timeout_s)
        # the pipeline does not manage templates: when Elasticsearch is reachable from here too,
        # put them before the first event (else install them once with `ensure_templates`)
        self._templates = ElasticsearchSink(templates_client) if templates_client is not None else None

    def prepare(self) -> None:
        if self._templates is not None:
            self._templates.prepare()

    def send(self, events: list[dict[str, Any]]) -> list[ItemResult]:
        import httpx

        body = b"".join(
            (
                e.line
                if isinstance(e, LoggedEvent)
                else json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode()
            )
            + b"\n"
            for e in events
        )
        try:
            response = self._http.post(
                self.url, content=body, headers={"Content-Type": "application/x-ndjson"}
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"POST to Logstash failed: {exc}") from exc
        if response.status_code != 200:
            raise TransientError(f"Logstash answered {response.status_code}: {response.text[:200]}")
        return [ItemResult("delivered", 200)] * len(events)

    def close(self) -> None:
        self._http.close()
        if self._templates is not None:
            self._templates.close()


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"
