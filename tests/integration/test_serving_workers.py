"""`price-alchemy serve --workers 2` under concurrent traffic: every answered request is one document.

Two uvicorn worker processes on one home, eight client threads (keep-alive connections, renewed
every few requests so both workers get traffic), some requests invalid (422); then
`price-alchemy ship --once` into the real node. Every request that got an answer is exactly one
document, the workers wrote one stream each, and ``/metrics`` (whichever worker answers it) counts
the requests of both.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from elasticsearch import Elasticsearch
from integration.test_elasticsearch_shipping import assert_exactly
from real_services import free_port

from price_alchemy.config import Settings
from price_alchemy.eventlog import EventLogReader, scan_segments
from price_alchemy.params import Params
from price_alchemy.training.stages import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = Path(sys.executable).parent / "price-alchemy"
CLIENTS = 8
REQUESTS_PER_CLIENT = 60
LISTING = {
    "name": "Vintage leather jacket",
    "item_condition_id": 3,
    "category_name": "Women/Coats & Jackets/Leather",
    "brand_name": "Levi's",
    "shipping": 0,
    "item_description": "Warm, a little worn at the cuffs.",
}


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[..., Settings],
    params: Params,
    synthetic_listings: pd.DataFrame,
    mlflow_reset: Callable[[], None],
) -> Iterator[Path]:
    settings = settings_factory(tmp_path_factory.mktemp("workers") / "home")
    try:
        run_training(synthetic_listings.head(300), settings, params, source="test:workers")
    finally:
        mlflow_reset()
    yield settings.home


def _env(home: Path, es_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))}
    env.update(PRICE_ALCHEMY_HOME=str(home), PRICE_ALCHEMY_ELASTICSEARCH_URL=es_url)
    return env


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry these labels (any others allowed)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def client(port: int, k: int, answered: list[tuple[int, str]], errors: list[str]) -> None:
    conn = None
    for i in range(REQUESTS_PER_CLIENT):
        if i % 5 == 0:  # a new connection now and then: the kernel spreads them over the workers
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = {**LISTING, "shipping": 7} if (k + i) % 10 == 0 else LISTING  # 10% invalid (422)
        try:
            assert conn is not None
            conn.request(
                "POST", "/v1/predict", body=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            answered.append((response.status, str(response.getheader("X-Request-ID"))))
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn = None
            if i % 5 != 4:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if conn is not None:
        conn.close()


def test_two_workers_answer_concurrent_traffic_and_every_answer_is_one_document(
    home: Path, es_clean: Elasticsearch, es_settings: Settings, tmp_path: Path
) -> None:
    env = _env(home, str(es_settings.elasticsearch_url))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(CLI), "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # both workers loaded: their first swaps add up to 2
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                status, text = _get(port, "/metrics")
                if status == 200 and metric_sum(text, "price_alchemy_model_swaps_total") == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"two workers not ready:\n{log.read_text()[-3000:]}")

        answered: list[tuple[int, str]] = []
        errors: list[str] = []
        threads = [threading.Thread(target=client, args=(port, k, answered, errors)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        status, text = _get(port, "/metrics")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        returncode = server.wait(timeout=60)

    statuses = [s for s, _ in answered]
    assert errors == [] and len(answered) == CLIENTS * REQUESTS_PER_CLIENT
    assert set(statuses) == {200, 422} and statuses.count(422) == len(answered) // 10
    assert returncode == 0, log.read_text()[-3000:]
    assert not list((home / "serving" / "metrics").glob("*"))  # the run's metrics folder is removed
    # /metrics, answered by one worker, counted the requests of both
    requests = "price_alchemy_http_requests_total"
    assert metric_sum(text, requests, route="/v1/predict", status="200") == statuses.count(200)
    assert metric_sum(text, requests, route="/v1/predict", status="422") == statuses.count(422)
    assert metric_sum(text, "price_alchemy_request_events_written_total") == len(answered)

    log_dir = home / "request-log"
    streams = scan_segments(log_dir)
    assert len(streams) >= 2, streams  # one stream per worker (restarts may add more)
    ship = subprocess.run(
        [str(CLI), "ship", "--once"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert ship.returncode == 0, ship.stderr
    assert_exactly(es_clean, [request_id for _, request_id in answered])
    assert EventLogReader(log_dir, "shipper").pending_bytes() == 0
