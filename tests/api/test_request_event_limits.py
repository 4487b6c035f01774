"""The request-event buffer is bounded, loudly: what is not written is counted in /metrics and logged."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import LISTING, AppFactory, read_events

from price_alchemy.eventlog import log_bytes

pytestmark = pytest.mark.api

KEY = "limits-test-key"


def metric(client: TestClient, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{wanted}}}" if labels else name) + r" (\S+)$"
    for line in client.get("/metrics").text.splitlines():
        match = re.match(pattern, line)
        if match:
            return float(match.group(1))
    return 0.0


def test_a_full_buffer_drops_events_but_answers_every_request(
    make_client: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="price_alchemy")
    limit = 65_536
    client = make_client(request_log_max_bytes=limit, request_log_segment_bytes=8192)
    batch = {"listings": [LISTING] * 20}  # ~4.6 kB of event each

    statuses = [client.post("/v1/predict/batch", json=batch).status_code for _ in range(30)]

    assert statuses == [200] * 30  # the API keeps answering
    written, dropped = len(read_events(tmp_path / "home")), 30 - len(read_events(tmp_path / "home"))
    assert 10 <= written < 30 and dropped > 0
    assert log_bytes(tmp_path / "home" / "request-log") <= limit
    assert metric(client, "price_alchemy_request_events_dropped_total", reason="buffer_full") == dropped
    assert metric(client, "price_alchemy_request_events_written_total") == written
    assert 0 < metric(client, "price_alchemy_request_log_buffer_bytes") <= limit
    (line,) = [r.getMessage() for r in caplog.records if "request events not written" in r.getMessage()]
    assert "1 buffer_full" in line and f"limit {limit:,}" in line  # the first drop, logged at once


def test_requests_refused_before_authentication_write_events_only_within_their_rate(
    make_client: AppFactory, tmp_path: Path
) -> None:
    client = make_client(api_key=KEY, request_log_refused_per_minute=3, max_body_bytes=2048)

    unauthenticated = [client.post("/v1/predict", json=LISTING).status_code for _ in range(8)]
    too_big = client.post("/v1/predict/batch", json={"listings": [LISTING] * 20}, headers={"X-API-Key": KEY})
    answered = client.post("/v1/predict", json=LISTING, headers={"X-API-Key": KEY})

    assert unauthenticated == [401] * 8 and too_big.status_code == 413 and answered.status_code == 200
    events = read_events(tmp_path / "home")
    assert [e["http"]["response"]["status_code"] for e in events] == [401, 401, 401, 200]
    assert metric(client, "price_alchemy_request_events_dropped_total", reason="refused_over_rate") == 6
    requests = "price_alchemy_http_requests_total"
    assert metric(client, requests, method="POST", route="/v1/predict", status="401") == 8  # all counted
    assert metric(client, requests, method="POST", route="unmatched", status="413") == 1


def test_refused_requests_can_be_kept_out_of_the_buffer_entirely(
    make_client: AppFactory, tmp_path: Path
) -> None:
    client = make_client(api_key=KEY, request_log_refused_per_minute=0)

    for _ in range(5):
        assert client.post("/v1/predict", json=LISTING).status_code == 401
    assert client.post("/v1/predict", json=LISTING, headers={"X-API-Key": KEY}).status_code == 200

    assert [e["http"]["response"]["status_code"] for e in read_events(tmp_path / "home")] == [200]
    assert metric(client, "price_alchemy_request_events_dropped_total", reason="refused_over_rate") == 5


def test_a_failed_write_is_counted_and_logged_and_the_request_answered(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="price_alchemy")
    events = client.app.state.serving.events  # type: ignore[attr-defined]

    def no_space(event: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events._writer, "append", no_space)
    assert client.post("/v1/predict", json=LISTING).status_code == 200
    assert client.post("/v1/predict", json=LISTING).status_code == 200

    assert metric(client, "price_alchemy_request_events_dropped_total", reason="write_failed") == 2
    assert metric(client, "price_alchemy_request_events_written_total") == 0
    logged = [r.getMessage() for r in caplog.records if "request events not written" in r.getMessage()]
    assert len(logged) == 1 and "No space left on device" in logged[0]  # then summarized, not per event
