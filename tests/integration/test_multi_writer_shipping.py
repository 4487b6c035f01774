"""Several writer processes on one home and `price-alchemy ship --follow` into a real node: exactly once.

Each writer is a process writing through the API's own event log (``tests/integration/
event_writer.py``); the shipper is the CLI. In the middle the shipper is killed (SIGKILL: no clean
shutdown, a batch may be sent and not committed) and started again, and Elasticsearch is stopped
and started while the writers go on. At the end every event is one document, none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from integration.elasticsearch_fixtures import ElasticsearchNode
from integration.test_elasticsearch_shipping import INDICES, assert_exactly

from price_alchemy.config import Settings
from price_alchemy.eventlog import EventLogReader, scan_segments

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITER = Path(__file__).with_name("event_writer.py")
CLI = Path(sys.executable).parent / "price-alchemy"
DURATION_S = 35.0  # each writer spreads its events over this long: uneven rates, as behind a balancer
SEGMENT_BYTES = 65_536  # about 90 events


def count(client: Elasticsearch) -> int:
    try:
        client.indices.refresh(index=INDICES, allow_no_indices=True)
        return int(client.count(index=INDICES, allow_no_indices=True)["count"])
    except Exception:  # the node is down or the first index does not exist yet
        return -1


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    def __init__(self, settings: Settings, logs: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "MLFLOW_"))},
            "PRICE_ALCHEMY_HOME": str(settings.home),
            "PRICE_ALCHEMY_ELASTICSEARCH_URL": str(settings.elasticsearch_url),
            # small segments: the writers rotate while the shipper commits and deletes behind them
            "PRICE_ALCHEMY_REQUEST_LOG_SEGMENT_BYTES": str(SEGMENT_BYTES),
        }
        self.settings = settings
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=self.settings.home.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def shipper(self) -> subprocess.Popen[bytes]:
        return self.start("shipper", [str(CLI), "ship", "--follow"])

    def writer(self, prefix: str, n: int) -> subprocess.Popen[bytes]:
        home, rate = str(self.settings.home), str(n / DURATION_S)
        return self.start(prefix, [sys.executable, str(WRITER), home, prefix, str(n), rate])

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def processes(es_settings: Settings, tmp_path: Path) -> Iterator[Processes]:
    started = Processes(es_settings, tmp_path)
    yield started
    started.stop_all()


@pytest.mark.parametrize("writers", [2, 3])
def test_writer_processes_and_ship_follow_deliver_exactly_once_through_restarts_and_an_outage(
    writers: int,
    processes: Processes,
    es_clean: Elasticsearch,
    es_settings: Settings,
    elasticsearch_node: ElasticsearchNode,
) -> None:
    sizes = [1400, 600, 300][:writers]  # uneven traffic: the writers rotate segments at different times
    expected = [f"p{k}-{i:06d}" for k, n in enumerate(sizes) for i in range(n)]
    shipper = processes.shipper()
    procs = [processes.writer(f"p{k}", n) for k, n in enumerate(sizes)]

    wait_for(lambda: count(es_clean) >= 100, 120, "the first documents")
    os.killpg(shipper.pid, signal.SIGKILL)  # a crash: whatever it sent last is not committed
    shipper.wait(timeout=10)
    before = count(es_clean)
    shipper = processes.shipper()
    wait_for(lambda: count(es_clean) >= before + 100, 120, "shipping after the restart")

    elasticsearch_node.stop()  # the writers go on; the shipper retries with back-off
    time.sleep(3)
    assert shipper.poll() is None, processes.log("shipper")
    elasticsearch_node.start()

    for k, proc in enumerate(procs):
        assert proc.wait(timeout=180) == 0, processes.log(f"p{k}")
    reader = EventLogReader(es_settings.request_log_dir, "shipper")
    wait_for(lambda: reader.pending_bytes() == 0, 240, "the backlog to drain")
    shipper.send_signal(signal.SIGTERM)
    assert shipper.wait(timeout=60) == 0, processes.log("shipper")
    assert_exactly(es_clean, expected)
    assert not (es_settings.request_log_dir / "dead-letter").exists()
    streams = scan_segments(es_settings.request_log_dir)
    assert len(streams) == writers  # one stream per writer process, each left with its last segment
    assert all(len(segments) == 1 for segments in streams.values())  # the rest consumed and deleted
