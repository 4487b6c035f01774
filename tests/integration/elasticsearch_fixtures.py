"""Pytest fixtures around a real single-node Elasticsearch started for the test session.

Registered for the whole suite through ``pytest_plugins`` in ``tests/conftest.py``, so any test
may ask for them:

- ``elasticsearch_node`` (session): an :class:`ElasticsearchNode` with ``.url``, ``.port``,
  ``.data_dir``, ``.stop()``, ``.start()`` (same port and data: an outage and its end) and
  ``.running``. Started through ``scripts/elasticsearch.py`` (which fetches the server into
  ``.cache/elasticsearch/`` on first use) in its own process group; teardown stops the group.
- ``es_client`` (session): an ``elasticsearch.Elasticsearch`` connected to the node.
- ``es_clean`` (function): makes sure the node runs, deletes every non-system index and the
  project's index templates before and after the test; yields ``es_client``.
- ``es_index_prefix`` (function): a unique lower-case prefix (``t-<hex>-``); indices starting
  with it are deleted after the test.
- ``es_settings`` (function): isolated ``Settings`` (home under ``tmp_path``) pointing at the node.

When the node cannot start, tests using it are skipped on a developer machine but fail when
``CI`` is set: a missing node must not turn into a green build.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from integration.real_services import free_port, unavailable

from price_alchemy.config import Settings

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "elasticsearch.py"
#: A cold start on 2 busy cores takes 25-60 s; the first run also downloads ~100 MB.
START_TIMEOUT_S = 240.0
PROJECT_TEMPLATES = "price-alchemy-*"


def _group_gone(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """Wait until no process of ``proc``'s group is left."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: as a zombie it would keep the group "alive"
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


class ElasticsearchNode:
    """One node process; ``stop()`` then ``start()`` brings it back on the same port and data."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"{data_dir.name}.console.log"
        self.start_seconds: list[float] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def healthy(self) -> bool:
        # GET / is not served by this distribution (no rest-root module): ask the cluster instead
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the node (no-op when running) and wait until the cluster answers."""
        if self.running:
            return
        started = time.monotonic()
        with self.log_path.open("ab") as console:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    "start",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"node exited with {self._proc.returncode}:\n{self.tail()}")
            if self.healthy():
                self.start_seconds.append(time.monotonic() - started)
                log.info("elasticsearch answered on %s after %.1fs", self.url, self.start_seconds[-1])
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"no answer on {self.url} within {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        """Stop the launcher and the server JVM (the whole process group); kill if they linger."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            if _group_gone(proc, grace):
                break
        proc.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]


@pytest.fixture(scope="session")
def elasticsearch_node() -> Iterator[ElasticsearchNode]:
    """A real Elasticsearch 8.x node for this session (skipped locally / failed in CI if impossible)."""
    # Not under pytest's tmp_path: as root the node runs as `nobody`, who cannot enter that 0700 tree.
    base = Path(tempfile.mkdtemp(prefix="price-alchemy-es-"))
    base.chmod(0o755)
    node = ElasticsearchNode(free_port(), base / "node")
    try:
        try:
            node.start()
        except (OSError, RuntimeError) as exc:
            unavailable("Elasticsearch node", str(exc))
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def es_client(elasticsearch_node: ElasticsearchNode) -> Iterator[Elasticsearch]:
    """A client of the session's node (generous timeout: the machine is shared)."""
    client = Elasticsearch(elasticsearch_node.url, request_timeout=60)
    yield client
    client.close()


def _wipe(client: Elasticsearch) -> None:
    indices = client.indices.get(index="*", expand_wildcards="open,closed")
    names = [name for name in indices if not name.startswith(".")]
    if names:  # by name: wildcard deletes are refused (action.destructive_requires_name)
        client.indices.delete(index=",".join(names))
    templates = client.options(ignore_status=404).indices.get_index_template(name=PROJECT_TEMPLATES)
    for item in templates.body.get("index_templates", []):
        client.indices.delete_index_template(name=item["name"])


@pytest.fixture
def es_clean(elasticsearch_node: ElasticsearchNode, es_client: Elasticsearch) -> Iterator[Elasticsearch]:
    """The node running and empty (no indices, no project templates) before and after the test."""
    try:
        elasticsearch_node.start()  # a previous test may have left it stopped
    except RuntimeError as exc:
        unavailable("Elasticsearch node", str(exc))
    _wipe(es_client)
    yield es_client
    elasticsearch_node.start()
    _wipe(es_client)


@pytest.fixture
def es_index_prefix(es_client: Elasticsearch) -> Iterator[str]:
    """A unique index-name prefix; its indices are deleted after the test."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    yield prefix
    found = es_client.indices.get(index=f"{prefix}*", allow_no_indices=True, ignore_unavailable=True)
    if found:
        es_client.indices.delete(index=",".join(found))


@pytest.fixture
def es_settings(elasticsearch_node: ElasticsearchNode, tmp_path: Path) -> Settings:
    """Isolated settings (home under ``tmp_path``, no .env) that point at the session's node."""
    return Settings(_env_file=None, home=tmp_path / "home", elasticsearch_url=elasticsearch_node.url)  # type: ignore[call-arg]
