"""Shipping request events into a real Elasticsearch node: exactly once through replays, outages, restarts."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from integration.elasticsearch_fixtures import ElasticsearchNode

from price_alchemy.config import Settings
from price_alchemy.eventlog import EventLogReader, EventLogWriter
from price_alchemy.monitoring.elastic import connect
from price_alchemy.monitoring.shipping import Backoff, Shipper, ShippingError
from price_alchemy.monitoring.sinks import ElasticsearchSink, ItemResult

pytestmark = [pytest.mark.integration]

INDICES = "price-alchemy-requests-*"
START = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)  # events cross midnight: two daily indices
FAST = Backoff(initial_s=0.1, cap_s=1.0)


def request_event(i: int, *, when: datetime | None = None, prefix: str = "req") -> dict[str, Any]:
    """A request event shaped as in docs/request-events.md."""
    when = when or START + timedelta(seconds=30 * i)
    return {
        "@timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ecs": {"version": "8.11.0"},
        "event": {
            "id": f"{prefix}-{i:06d}",
            "kind": "event",
            "category": ["web"],
            "type": ["access"],
            "dataset": "price_alchemy.requests",
            "outcome": "success",
            "duration": 12_500_000 + i,
        },
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": "/v1/predict"},
        "service": {"name": "price-alchemy-api", "version": "0.1.0"},
        "price_alchemy": {
            "route": "predict",
            "latency_ms": 12.5,
            "batch_size": 1,
            "model": {"name": "price-alchemy", "version": "3", "alias": "champion"},
            "listings": [
                {
                    "item_condition_id": 1 + i % 5,
                    "shipping": i % 2,
                    "category_name": "Women/Tops & Blouses/Blouse",
                    "top_category": "Women",
                    "brand_name": "(missing)" if i % 3 else "Nike",
                    "name": f"Blouse number {i}",
                    "name_length": 15,
                    "description_length": 120,
                    "price": 21.0,
                    "price_low": 12.0,
                    "price_high": 35.0,
                }
            ],
        },
    }


def write_events(log_dir: Path, start: int, count: int) -> list[str]:
    with EventLogWriter(log_dir) as writer:
        for i in range(start, start + count):
            writer.append(request_event(i))
    return [f"req-{i:06d}" for i in range(start, start + count)]


def shipper(settings: Settings, **kwargs: Any) -> Shipper:
    sink = ElasticsearchSink(connect(settings, max_retries=0, request_timeout=10))
    return Shipper(settings.request_log_dir, sink, backoff=FAST, seed=0, **kwargs)


def indexed_ids(client: Elasticsearch) -> list[str]:
    """Every document's ``_id`` (checked equal to its ``event.id``), duplicates kept."""
    client.indices.refresh(index=INDICES)
    ids = []
    for hit in _scan(client):
        assert hit["_id"] == hit["_source"]["event"]["id"]
        ids.append(hit["_id"])
    return ids


def _scan(client: Elasticsearch) -> list[dict[str, Any]]:
    found = client.search(index=INDICES, size=10_000, query={"match_all": {}}, sort=["_doc"])
    return list(found["hits"]["hits"])


def assert_exactly(client: Elasticsearch, expected: list[str]) -> None:
    ids = indexed_ids(client)
    assert len(ids) == len(set(ids)), "an event was indexed twice"
    assert sorted(ids) == sorted(expected)


def test_backlog_is_indexed_once_per_event_into_daily_indices(
    es_clean: Elasticsearch, es_settings: Settings
) -> None:
    expected = write_events(es_settings.request_log_dir, 0, 300)
    with shipper(es_settings, batch_size=64) as s:
        stats = s.ship_backlog()
    assert (stats.delivered, stats.duplicates, stats.dead_lettered) == (300, 0, 0)
    assert_exactly(es_clean, expected)
    counts = es_clean.cat.indices(index=INDICES, format="json", h="index,docs.count")
    by_day = {row["index"]: int(row["docs.count"]) for row in counts}
    # from 22:00 in 30 s steps: 240 events on May 1st, the other 60 on May 2nd
    assert by_day == {"price-alchemy-requests-2024.05.01": 240, "price-alchemy-requests-2024.05.02": 60}
    assert EventLogReader(es_settings.request_log_dir, "shipper").pending_bytes() == 0


def test_replay_after_a_lost_checkpoint_adds_no_duplicate(
    es_clean: Elasticsearch, es_settings: Settings
) -> None:
    expected = write_events(es_settings.request_log_dir, 0, 200)
    with shipper(es_settings) as s:
        s.ship_backlog()
    (es_settings.request_log_dir / "shipper.checkpoint").unlink()
    with shipper(es_settings) as s:
        stats = s.ship_backlog()
    assert (stats.delivered, stats.duplicates) == (0, 200)
    assert_exactly(es_clean, expected)


@pytest.mark.slow
def test_outage_delays_events_without_losing_or_duplicating(
    es_clean: Elasticsearch, es_settings: Settings, elasticsearch_node: ElasticsearchNode
) -> None:
    log_dir = es_settings.request_log_dir
    expected = write_events(log_dir, 0, 150)
    with shipper(es_settings) as s:
        assert s.ship_backlog().delivered == 150
    checkpoint = (log_dir / "shipper.checkpoint").read_text()

    elasticsearch_node.stop()
    expected += write_events(log_dir, 150, 100)
    stop = threading.Event()
    outcome: dict[str, Any] = {}
    with shipper(es_settings, batch_size=40) as s:

        def run() -> None:
            try:
                outcome["stats"] = s.ship_backlog(stop)
            except Exception as exc:  # surfaced by the assertions below
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while s.stats.retries < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert s.stats.retries >= 3, "the shipper should keep retrying while the node is down"
        assert (log_dir / "shipper.checkpoint").read_text() == checkpoint  # nothing committed
        assert s.stats.delivered == 0

        elasticsearch_node.start()
        thread.join(timeout=180)
        stop.set()
        assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["stats"].delivered == 100
    assert_exactly(es_clean, expected)


class CrashAfterSend(ElasticsearchSink):
    """Delivers the first batch, then 'crashes' before the shipper can commit it."""

    def send(self, events: list[dict[str, Any]]) -> list[ItemResult]:
        super().send(events)
        raise KeyboardInterrupt("process killed after the bulk, before the commit")


def test_restarts_of_api_and_shipper_with_events_buffered_deliver_exactly_once(
    es_clean: Elasticsearch, es_settings: Settings
) -> None:
    log_dir = es_settings.request_log_dir
    expected = write_events(log_dir, 0, 120)  # API #1 wrote 120, then stopped
    first = Shipper(log_dir, CrashAfterSend(connect(es_settings)), batch_size=50, backoff=FAST)
    with pytest.raises(KeyboardInterrupt):
        first.ship_backlog()
    first.close()
    assert not (log_dir / "shipper.checkpoint").exists()  # 50 indexed, none committed

    expected += write_events(log_dir, 120, 80)  # API #2 on the same folder appends more
    with shipper(es_settings, batch_size=50) as second:
        stats = second.ship_backlog()
    assert (stats.delivered, stats.duplicates) == (150, 50)
    assert_exactly(es_clean, expected)


def test_undeliverable_events_go_to_the_dead_letter_log_and_the_rest_arrive(
    es_clean: Elasticsearch, es_settings: Settings
) -> None:
    log_dir = es_settings.request_log_dir
    expected = write_events(log_dir, 0, 10)
    bad_type = request_event(99)
    bad_type["price_alchemy"]["latency_ms"] = "fast"  # mapping rejection (400)
    no_id = request_event(98)
    del no_id["event"]["id"]
    with EventLogWriter(log_dir) as writer:
        writer.append_line(b'{"@timestamp": "2024-05-01T22:00:00Z", "event": {"id"\n')  # cut short
        writer.append(bad_type)
        writer.append(no_id)
    expected += write_events(log_dir, 10, 10)

    with shipper(es_settings) as s:
        stats = s.ship_backlog()
    assert (stats.delivered, stats.dead_lettered) == (20, 3)
    assert_exactly(es_clean, expected)

    dead = [json.loads(line) for p in sorted((log_dir / "dead-letter").glob("*.jsonl")) for line in p.open()]
    assert [d["reason"].split(":")[0] for d in dead] == [
        "not JSON",
        "document_parsing_exception",
        "no event.id",
    ]
    assert dead[0]["raw"].startswith('{"@timestamp"') and dead[0]["event"] is None
    assert dead[1]["status"] == 400 and dead[1]["event"]["event"]["id"] == "req-000099"
    assert EventLogReader(log_dir, "shipper").pending_bytes() == 0


def test_once_gives_up_with_a_clear_error_when_the_node_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home", elasticsearch_url="http://127.0.0.1:9")  # type: ignore[call-arg]
    write_events(settings.request_log_dir, 0, 5)
    with (
        shipper(settings) as s,
        pytest.raises(ShippingError, match=r"unreachable for 1s.*bytes of events stay buffered"),
    ):
        s.ship_backlog(give_up_after_s=1.0)
    assert not (settings.request_log_dir / "shipper.checkpoint").exists()


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, url: str) -> None:
    from price_alchemy.config import get_settings

    monkeypatch.setenv("PRICE_ALCHEMY_HOME", str(settings.home))
    monkeypatch.setenv("PRICE_ALCHEMY_ELASTICSEARCH_URL", url)
    monkeypatch.chdir(settings.home.parent)
    get_settings.cache_clear()


def test_cli_ship_once_ships_the_backlog_or_fails_clearly(
    es_clean: Elasticsearch, es_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from price_alchemy import cli
    from price_alchemy.monitoring import shipping

    expected = write_events(es_settings.request_log_dir, 0, 30)
    _cli_env(monkeypatch, es_settings, str(es_settings.elasticsearch_url))
    result = CliRunner().invoke(cli.app, ["ship", "--once"])
    assert result.exit_code == 0, result.output
    assert "shipped 30 events to elasticsearch (30 new" in " ".join(result.output.split())
    assert_exactly(es_clean, expected)

    write_events(es_settings.request_log_dir, 30, 5)
    _cli_env(monkeypatch, es_settings, "http://127.0.0.1:9")
    monkeypatch.setattr(shipping, "ONCE_GIVE_UP_S", 1.0)
    result = CliRunner().invoke(cli.app, ["ship", "--once"])
    assert result.exit_code == 1
    assert "ShippingError: elasticsearch unreachable" in " ".join(result.output.split())
    assert EventLogReader(es_settings.request_log_dir, "shipper").pending_bytes() > 0


def test_cli_ship_follow_ships_new_events_and_stops_cleanly_on_sigterm(
    es_clean: Elasticsearch, es_settings: Settings
) -> None:
    import os
    import signal
    import subprocess
    import sys

    log_dir = es_settings.request_log_dir
    env = {
        **os.environ,
        "PRICE_ALCHEMY_HOME": str(es_settings.home),
        "PRICE_ALCHEMY_ELASTICSEARCH_URL": str(es_settings.elasticsearch_url),
    }
    cli = Path(sys.executable).parent / "price-alchemy"
    proc = subprocess.Popen(
        [str(cli), "ship", "--follow"],
        env=env,
        cwd=es_settings.home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        expected = write_events(log_dir, 0, 40)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and EventLogReader(log_dir, "shipper").pending_bytes():
            time.sleep(0.2)
        expected += write_events(log_dir, 40, 10)  # while it is following
        while time.monotonic() < deadline and EventLogReader(log_dir, "shipper").pending_bytes():
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()
    assert "shipped 50 events" in " ".join(output.decode().split())
    assert_exactly(es_clean, expected)
