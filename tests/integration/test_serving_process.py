"""The API as a real process (`price-alchemy serve`, uvicorn): hot swap and restart without MLflow.

One MLflow store for the module: v1 is a weak model; the hot-swap test trains v2 while a client
keeps sending requests, moves the ``champion`` alias to it, and checks that no request failed and
that v2 answers within the watch interval (plus the time to load it).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from real_services import free_port

from price_alchemy.config import Settings
from price_alchemy.params import Params
from price_alchemy.training.stages import run_training

pytestmark = pytest.mark.integration

WATCH_INTERVAL_S = 1.0
START_TIMEOUT_S = 120.0
LISTING = {
    "name": "Vintage leather jacket",
    "item_condition_id": 3,
    "category_name": "Women/Coats & Jackets/Leather",
    "brand_name": "Levi's",
    "shipping": 0,
    "item_description": "Warm, a little worn at the cuffs.",
}


@dataclass
class Store:
    settings: Settings
    listings: pd.DataFrame
    params: Params


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[..., Settings],
    params: Params,
    synthetic_listings: pd.DataFrame,
    mlflow_reset: Callable[[], None],
) -> Iterator[Store]:
    settings = settings_factory(tmp_path_factory.mktemp("serving") / "home")
    try:
        assert (
            run_training(synthetic_listings.head(300), settings, params, source="test:v1").model_version
            == "1"
        )
    finally:
        mlflow_reset()
    yield Store(settings, synthetic_listings, params)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(home: Path, **env: str) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))}
        full_env.update(
            PRICE_ALCHEMY_HOME=str(home), PRICE_ALCHEMY_MODEL_WATCH_INTERVAL_S=str(WATCH_INTERVAL_S), **env
        )
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "price_alchemy.cli", "serve", "--port", str(port)],
                env=full_env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, port, log)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if server.request("GET", "/health/ready")[0] == 200:
                    return server
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")

    yield start
    for server in started:
        server.stop()


@dataclass
class Traffic:
    """A client thread sending predictions over one keep-alive connection until stopped."""

    port: int
    results: list[tuple[float, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps(LISTING).encode()
        while not self.stop.is_set():
            try:
                conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                data = json.loads(response.read())
                version = data.get("model", {}).get("version") if response.status == 200 else None
                self.results.append((time.monotonic(), response.status, version))
            except (OSError, http.client.HTTPException, ValueError):
                self.results.append((time.monotonic(), -1, None))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(0.005)
        conn.close()


def test_hot_swap_under_traffic_fails_no_request(store: Store, start_server: Callable[..., Server]) -> None:
    server = start_server(store.settings.home)
    status, info = server.request("GET", "/v1/model")
    assert (status, info["version"], info["source"]) == (200, "1", "registry")

    traffic = Traffic(server.port)
    thread = threading.Thread(target=traffic.run)
    thread.start()
    try:
        result = run_training(store.listings, store.settings, store.params, source="test:v2")
        client = MlflowClient(
            tracking_uri=store.settings.tracking_uri, registry_uri=store.settings.tracking_uri
        )
        client.set_registered_model_alias(store.settings.model_name, "champion", result.model_version)
        moved_at = time.monotonic()
        deadline = moved_at + 60
        while time.monotonic() < deadline and not any(v == "2" for _, _, v in traffic.results[-5:]):
            time.sleep(0.1)
        time.sleep(1.0)  # keep traffic flowing after the swap
    finally:
        traffic.stop.set()
        thread.join(timeout=30)

    statuses = [s for _, s, _ in traffic.results]
    versions = [v for _, _, v in traffic.results]
    assert result.model_version == "2"
    assert len(statuses) > 50 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    first_v2 = versions.index("2")
    assert set(versions[:first_v2]) == {"1"} and set(versions[first_v2:]) == {"2"}  # one clean switch
    swapped_after = traffic.results[first_v2][0] - moved_at
    assert swapped_after < WATCH_INTERVAL_S + 30, swapped_after  # next poll + download/load/warm-up
    status, info = server.request("GET", "/v1/model")
    assert info["version"] == "2"
    assert "price_alchemy_model_swaps_total 2.0" in server_metrics(server)


def server_metrics(server: Server) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_restart_without_mlflow_serves_the_cached_model(
    store: Store, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    online = start_server(store.settings.home)
    status, expected = online.request("POST", "/v1/predict", LISTING)
    assert status == 200
    online.stop()

    offline = start_server(store.settings.home, MLFLOW_TRACKING_URI="http://127.0.0.1:9")

    status, info = offline.request("GET", "/v1/model")
    assert (status, info["source"], info["version"]) == (200, "cache", expected["model"]["version"])
    status, again = offline.request("POST", "/v1/predict", LISTING)
    assert status == 200
    assert (again["price"], again["price_range"]) == (expected["price"], expected["price_range"])
    time.sleep(3 * WATCH_INTERVAL_S)  # failed polls while MLflow is down do not stop the service
    assert offline.request("GET", "/health/ready")[0] == 200
    failures = [
        float(line.rsplit(" ", 1)[1])
        for line in server_metrics(offline).splitlines()
        if line.startswith("price_alchemy_model_refresh_failures_total ")
    ]
    assert failures and failures[0] >= 2
