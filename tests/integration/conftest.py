"""Integration fixtures: warehouses on a DuckDB file and on a real bqemulator process.

The emulator is started once per session through ``scripts/bqemulator.py`` (which builds its
own venv under ``.cache/bqemulator/`` on first use), in its own process group so that teardown
stops it and anything it spawned. When it cannot start, BigQuery tests are skipped on a
developer machine but fail under CI (``CI`` set): a missing emulator must not turn into a
silently green build.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_services import free_port, unavailable

from price_alchemy.config import Settings
from price_alchemy.data.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bqemulator.py"
# First run builds the venv (seconds with a warm uv cache, a minute or two cold); then ~4 s.
START_TIMEOUT_S = 300.0
BACKENDS = ("duckdb", "bigquery")


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _wait_until_healthy(proc: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            unavailable("BigQuery emulator", f"process exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{endpoint}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    unavailable(
        "BigQuery emulator", f"no answer on {endpoint} within {START_TIMEOUT_S:.0f}s:\n{_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the emulator's whole process group; kill it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def bqemulator_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REST endpoint of a bqemulator process running for this test session."""
    log_path = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        try:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "start", "--port", endpoint.rsplit(":", 1)[1]],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            unavailable("BigQuery emulator", f"cannot run {SCRIPT}: {exc}")
    try:
        _wait_until_healthy(proc, endpoint, log_path)
        log.info("bqemulator answered on %s after %.1fs", endpoint, time.monotonic() - started)
        yield endpoint
    finally:
        _stop(proc)


@pytest.fixture
def duckdb_settings(tmp_path: Path) -> Settings:
    """Settings for a fresh DuckDB warehouse under ``tmp_path``."""
    return Settings(_env_file=None, warehouse="duckdb", home=tmp_path / "home")


@pytest.fixture
def bigquery_settings(bqemulator_endpoint: str, tmp_path: Path) -> Settings:
    """Settings for a fresh dataset (unique per test) on the session's emulator."""
    return Settings(
        _env_file=None,
        warehouse="bigquery",
        home=tmp_path / "home",
        bigquery_project="test-project",
        bigquery_dataset=f"contract_{uuid.uuid4().hex[:12]}",
        bigquery_api_endpoint=bqemulator_endpoint,
    )


@pytest.fixture(params=BACKENDS)
def warehouse_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings of each backend in turn; the emulator starts only when a BigQuery test runs."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    return settings


@pytest.fixture
def warehouse(warehouse_settings: Settings) -> Iterator[Warehouse]:
    """An open warehouse of each backend, closed after the test."""
    with open_warehouse(warehouse_settings) as opened:
        yield opened
