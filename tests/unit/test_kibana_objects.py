"""Static checks of the Kibana saved objects (Kibana cannot run here) and of the import script.

- the committed NDJSON is exactly what ``monitoring.kibana`` generates from ``monitoring.panels``
  (so editing either by hand fails), and ``scripts/kibana_objects.py --check`` says so;
- the NDJSON holds the two data views, one visualization per panel of ``monitoring.panels`` and a
  dashboard showing each of them, and every reference resolves;
- each visualization's ``visState`` aggregations, translated the way Kibana's aggregation-based
  visualizations build their request, are exactly the panel's aggregation in ``panels.py`` (so the
  integration test that runs those aggregations checks what the dashboard draws);
- every field a panel reads is mapped, with an aggregatable type, by the index templates;
- ``scripts/kibana_import.sh`` posts the file to ``/api/saved_objects/_import?overwrite=true``
  with the ``kbn-xsrf`` header and the configured credentials (against a local stub of Kibana).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from price_alchemy import names
from price_alchemy.monitoring import kibana, panels

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NDJSON = ROOT / "docker" / "kibana" / "price-alchemy-dashboards.ndjson"
SCRIPT = ROOT / "scripts" / "kibana_import.sh"
GENERATOR = ROOT / "scripts" / "kibana_objects.py"
KIBANA_INTERVALS = {"m": "1m", "h": "1h", "d": "1d", "s": "1s"}
AGGREGATABLE = {"keyword", "long", "integer", "short", "float", "double", "scaled_float", "date", "boolean"}


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    rows = [json.loads(line) for line in NDJSON.read_text().splitlines() if line.strip()]
    keyed = {(o["type"], o["id"]): o for o in rows}
    assert len(keyed) == len(rows), "duplicate saved-object ids"
    return keyed


def _of_type(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {oid: o for (t, oid), o in objects.items() if t == kind}


def kibana_to_es(vis_state: dict[str, Any]) -> dict[str, Any]:
    """The aggregations Kibana requests for an aggregation-based visualization.

    Bucket aggregations nest in the order of ``aggs``; metrics sit in the innermost bucket
    (``count`` is the bucket's doc_count and adds nothing). Agg names here are those of panels.py,
    matched by position, since Kibana names them by id.
    """
    buckets, metrics = [], []
    for agg in vis_state["aggs"]:
        if not agg.get("enabled", True):
            continue
        p = agg["params"]
        if agg["type"] == "date_histogram":
            buckets.append(
                {"date_histogram": {"field": p["field"], "fixed_interval": KIBANA_INTERVALS[p["interval"]]}}
            )
        elif agg["type"] == "terms":
            buckets.append({"terms": {"field": p["field"], "size": p["size"]}})
        elif agg["type"] == "histogram":
            buckets.append({"histogram": {"field": p["field"], "interval": p["interval"]}})
        elif agg["type"] == "percentiles":
            metrics.append(
                {"percentiles": {"field": p["field"], "percents": [float(x) for x in p["percents"]]}}
            )
        elif agg["type"] in ("max", "min", "avg", "sum"):
            metrics.append({agg["type"]: {"field": p["field"]}})
        elif agg["type"] != "count":
            raise AssertionError(f"untranslated Kibana agg type {agg['type']}")
    return {"buckets": buckets, "metrics": metrics}


def flatten_panel(aggs: dict[str, Any]) -> dict[str, Any]:
    """panels.py aggregations in the same bucket-list / metric-list form."""
    buckets, metrics = [], []
    level = aggs
    while level:
        bucket_items = [(n, a) for n, a in level.items() if set(a) & {"date_histogram", "terms", "histogram"}]
        metrics += [
            {k: v for k, v in a.items() if k != "aggs"}
            for n, a in level.items()
            if (n, a) not in bucket_items
        ]
        assert len(bucket_items) <= 1, "one bucket aggregation per level"
        if not bucket_items:
            break
        _, bucket = bucket_items[0]
        buckets.append({k: v for k, v in bucket.items() if k != "aggs"})
        level = bucket.get("aggs", {})
    return {"buckets": buckets, "metrics": metrics}


def test_committed_ndjson_is_the_generators_output() -> None:
    generated = kibana.render_ndjson(kibana.saved_objects())
    assert NDJSON.read_text(encoding="utf-8") == generated, (
        f"{NDJSON} is generated from price_alchemy/monitoring/panels.py: "
        "run `python scripts/kibana_objects.py` instead of editing it"
    )
    assert NDJSON == ROOT / kibana.SAVED_OBJECTS_FILE


def test_rendering_is_stable_one_object_per_line_newline_terminated() -> None:
    objects = kibana.saved_objects()
    text = kibana.render_ndjson(objects)
    assert text == kibana.render_ndjson(kibana.saved_objects())
    assert text.endswith("}\n") and "\n\n" not in text
    assert [json.loads(line) for line in text.splitlines()] == objects
    kinds = [o["type"] for o in objects]
    assert kinds == ["index-pattern"] * 2 + ["visualization"] * len(panels.PANELS) + ["dashboard"]


def test_check_script_passes_on_the_committed_file_and_fails_with_a_diff_on_an_edit(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    committed = NDJSON.read_text(encoding="utf-8")
    objects = [json.loads(line) for line in committed.splitlines()]
    objects[0]["attributes"]["name"] = "edited by hand"
    edited = tmp_path / "edited.ndjson"
    edited.write_text(kibana.render_ndjson(objects), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--path", str(edited)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    view = panels.DATA_VIEWS["requests"]
    assert '-    "name": "edited by hand"' in bad.stderr and f'+    "name": "{view.name}"' in bad.stderr
    written = tmp_path / "written.ndjson"
    wrote = subprocess.run(
        [sys.executable, str(GENERATOR), "--path", str(written)], capture_output=True, text=True, timeout=60
    )
    assert wrote.returncode == 0, wrote.stderr
    assert written.read_text(encoding="utf-8") == committed


@pytest.mark.parametrize(
    ("aggs", "message"),
    [
        ({"u": {"cardinality": {"field": "x"}}}, "not translated"),
        ({"t": {"terms": {"field": "x", "size": 5, "order": {"_key": "asc"}}}}, "options ['order']"),
        (
            {"a": {"terms": {"field": "x", "size": 5}}, "b": {"terms": {"field": "y", "size": 5}}},
            "one bucket",
        ),
        ({"m": {"max": {"field": "v"}}, "t": {"terms": {"field": "x", "size": 5}}}, "innermost"),
        (
            {"t": {"terms": {"field": "x", "size": 5}, "histogram": {"field": "y", "interval": 1}}},
            "exactly one",
        ),
    ],
)
def test_generator_refuses_aggregations_it_cannot_translate(aggs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        kibana.vis_aggs(aggs, panels.Chart("line", "Requests"))


def test_xy_chart_refuses_more_than_an_axis_and_a_split() -> None:
    three = {
        "a": {
            "terms": {"field": "x", "size": 5},
            "aggs": {
                "b": {"terms": {"field": "y", "size": 5}, "aggs": {"c": {"terms": {"field": "z", "size": 5}}}}
            },
        }
    }
    with pytest.raises(ValueError, match="3 bucket levels"):
        kibana.vis_aggs(three, panels.Chart("histogram", "Requests"))
    assert [a["schema"] for a in kibana.vis_aggs(three, panels.Chart("pie"))] == ["metric"] + ["segment"] * 3


def test_chart_refuses_a_value_axis_on_a_pie_and_none_on_a_line() -> None:
    with pytest.raises(ValueError, match="pie"):
        panels.Chart("pie", "Requests")
    with pytest.raises(ValueError, match="value_label"):
        panels.Chart("line")


def test_data_views_are_the_two_index_patterns_on_timestamp(objects: dict[tuple[str, str], Any]) -> None:
    views = _of_type(objects, "index-pattern")
    assert {v["attributes"]["title"]: v["attributes"]["timeFieldName"] for v in views.values()} == {
        names.REQUESTS_INDEX_PATTERN: "@timestamp",
        names.MONITORING_INDEX_PATTERN: "@timestamp",
    }
    # Stable ids: importing again overwrites these objects instead of adding copies.
    assert set(views) == {v.id for v in panels.DATA_VIEWS.values()}
    assert set(views) == {"price-alchemy-requests", "price-alchemy-monitoring"}


def test_dashboard_shows_every_panel_once_and_references_resolve(objects: dict[tuple[str, str], Any]) -> None:
    dashboard = objects[("dashboard", kibana.DASHBOARD_ID)]
    assert kibana.DASHBOARD_ID == "price-alchemy-dashboard"
    entries = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    shown = []
    for entry in entries:
        ref = refs[f"{entry['panelIndex']}:{entry['panelRefName']}"]
        assert (ref["type"], ref["id"]) in objects
        assert entry["gridData"]["i"] == entry["panelIndex"]
        shown.append(ref["id"])
    assert sorted(shown) == sorted(p.id for p in panels.PANELS)
    assert set(_of_type(objects, "visualization")) == {p.id for p in panels.PANELS}
    # Panels must not overlap on the 48-column grid.
    cells = set()
    for entry in entries:
        g = entry["gridData"]
        assert g["x"] + g["w"] <= 48
        new = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & new, entry["panelIndex"]
        cells |= new


@pytest.mark.parametrize("panel", panels.PANELS, ids=lambda p: p.id)
def test_visualization_requests_exactly_the_panel_aggregation(
    objects: dict[tuple[str, str], Any], panel: panels.Panel
) -> None:
    vis = objects[("visualization", panel.id)]
    state = json.loads(vis["attributes"]["visState"])
    assert state["title"] == vis["attributes"]["title"] == panel.title
    assert state["type"] == state["params"]["type"] == panel.chart.type
    assert kibana_to_es(state) == flatten_panel(panel.aggs)
    source = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    (ref,) = [r for r in vis["references"] if r["name"] == source["indexRefName"]]
    assert ref == {
        "name": source["indexRefName"],
        "type": "index-pattern",
        "id": panels.DATA_VIEWS[panel.data_view].id,
    }


def test_latency_panel_charts_p50_p95_p99() -> None:
    latency = panels.panel("price-alchemy-latency-percentiles")
    assert latency.aggs["per_minute"]["aggs"]["latency"]["percentiles"]["percents"] == [50.0, 95.0, 99.0]


def _template_mappings() -> dict[str, dict[str, str]]:
    """Index pattern -> mapped field types, from the index templates the node is given."""
    from price_alchemy.monitoring.templates import TEMPLATES, field_paths

    return {
        pattern: field_paths(body["template"]["mappings"])
        for body in TEMPLATES.values()
        for pattern in body["index_patterns"]
    }


@pytest.mark.parametrize("panel", panels.PANELS, ids=lambda p: p.id)
def test_every_panel_field_is_mapped_and_aggregatable(panel: panels.Panel) -> None:
    mapped = _template_mappings()[panel.index]
    for field in panel.fields():
        assert mapped.get(field) in AGGREGATABLE, (field, mapped.get(field))


class _StubKibana(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status":{"overall":{"level":"available"}}}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"success":true,"successCount":11}')


def test_import_script_posts_the_file_with_xsrf_header_and_auth(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubKibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            **os.environ,
            "KIBANA_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "KIBANA_USERNAME": "elastic",
            "KIBANA_PASSWORD": "s3cret",
            "KIBANA_WAIT_S": "10",
        }
        proc = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    (request,) = _StubKibana.received
    assert request["path"] == "/api/saved_objects/_import?overwrite=true"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["kbn-xsrf"] == "true" and headers["authorization"].startswith("Basic ")
    assert headers["content-type"].startswith("multipart/form-data")
    assert NDJSON.read_bytes() in request["body"]
