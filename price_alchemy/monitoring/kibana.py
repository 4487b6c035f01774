"""The Kibana saved objects (data views, visualizations, dashboard), generated from the panels.

``docker/kibana/price-alchemy-dashboards.ndjson`` is this module's output, written by
``scripts/kibana_objects.py`` and never edited by hand: :data:`panels.PANELS
<price_alchemy.monitoring.panels.PANELS>` is the one definition of what each panel queries, how it
is drawn and where it sits, so the aggregations the integration tests run are the ones the
dashboard requests. Pure: builds dicts and text, reads and writes nothing.

Each visualization is Kibana's aggregation-based kind: its ``visState.aggs`` lists the metrics
(``count`` when the panel's aggregation has none) and then the bucket aggregations in nesting order,
which is how Kibana builds its request. Aggregation types or options this module does not translate
are refused rather than dropped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from price_alchemy.monitoring.panels import (
    DATA_VIEWS,
    PANELS,
    TIME_FIELD,
    Chart,
    DataView,
    DataViewKey,
    Panel,
)

SAVED_OBJECTS_FILE = PurePosixPath("docker/kibana/price-alchemy-dashboards.ndjson")
"""Where the generated objects are committed, relative to the repository root."""
DASHBOARD_ID = "price-alchemy-dashboard"
DASHBOARD_TITLE = "Price Alchemy: requests and drift"
DASHBOARD_DESCRIPTION = (
    "Traffic, latency, errors, predictions and inputs of the price API; "
    "drift (PSI) of recent requests against the champion's training profile."
)
# The saved-object format these objects are written in; Kibana migrates them up on import.
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = "8.0.0"
PANEL_VERSION = "8.19.0"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
#: The options translated for each aggregation type; anything else is refused.
BUCKET_OPTIONS = {
    "date_histogram": {"field", "fixed_interval"},
    "terms": {"field", "size"},
    "histogram": {"field", "interval"},
}
METRIC_OPTIONS = {
    "percentiles": {"field", "percents"},
    **{k: {"field"} for k in ("max", "min", "avg", "sum")},
}
_EMPTY_QUERY = {"query": {"query": "", "language": "kuery"}, "filter": []}


def saved_objects(
    panels: Sequence[Panel] = PANELS, data_views: Mapping[DataViewKey, DataView] = DATA_VIEWS
) -> list[dict[str, Any]]:
    """The data views, one visualization per panel and the dashboard showing them, in that order."""
    return [
        *(_data_view(view) for view in data_views.values()),
        *(_visualization(p, data_views[p.data_view]) for p in panels),
        _dashboard(panels),
    ]


def render_ndjson(objects: Iterable[Mapping[str, Any]]) -> str:
    """One object per line, keys sorted: the same objects always give the same bytes."""
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in objects)


def vis_aggs(aggs: Mapping[str, Any], chart: Chart) -> list[dict[str, Any]]:
    """A panel's Elasticsearch aggregation as a ``visState.aggs`` list (metrics first, ids 1, 2...)."""
    buckets, metrics = _split(aggs)
    if chart.type != "pie" and len(buckets) > 2:
        raise ValueError(f"a {chart.type} chart has an x axis and one split: {len(buckets)} bucket levels")
    out = [_agg(i, kind, "metric", _metric_params(kind, p)) for i, (kind, p) in enumerate(metrics)]
    if not out:
        out = [{"id": "1", "enabled": True, "type": "count", "params": {}, "schema": "metric"}]
    for depth, (kind, p) in enumerate(buckets):
        schema = "segment" if chart.type == "pie" or depth == 0 else "group"
        out.append(_agg(len(out), kind, schema, _bucket_params(kind, p)))
    return out


def _agg(index: int, kind: str, schema: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(index + 1), "enabled": True, "type": kind, "schema": schema, "params": params}


_Agg = tuple[str, dict[str, Any]]


def _split(aggs: Mapping[str, Any]) -> tuple[list[_Agg], list[_Agg]]:
    """(bucket, metric) aggregations as (type, options), buckets in nesting order."""
    buckets: list[_Agg] = []
    metrics: list[_Agg] = []
    level: Mapping[str, Any] = aggs
    while level:
        nested: list[Mapping[str, Any]] = []
        for name, node in level.items():
            kinds = set(node) - {"aggs"}
            if len(kinds) != 1:
                raise ValueError(f"aggregation {name!r} must have exactly one type, has {sorted(kinds)}")
            (kind,) = kinds
            allowed = BUCKET_OPTIONS.get(kind) or METRIC_OPTIONS.get(kind)
            if allowed is None:
                raise ValueError(f"aggregation {name!r}: type {kind!r} is not translated to Kibana")
            if extra := sorted(set(node[kind]) - allowed):
                raise ValueError(f"aggregation {name!r}: options {extra} not translated")
            if kind in METRIC_OPTIONS:
                if "aggs" in node:
                    raise ValueError(f"metric aggregation {name!r} cannot have sub-aggregations")
                metrics.append((kind, node[kind]))
            else:
                buckets.append((kind, node[kind]))
                nested.append(node.get("aggs", {}))
        if len(nested) > 1 or (nested and metrics):
            # Kibana nests one bucket aggregation per level and computes metrics innermost only.
            raise ValueError("one bucket aggregation per level, and metrics only in the innermost level")
        level = nested[0] if nested else {}
    return buckets, metrics


def _kibana_interval(fixed: str) -> str:
    # Kibana writes one unit as the unit letter ("m" is one minute); other intervals as in ES.
    return fixed[-1] if fixed[:-1] == "1" else fixed


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _metric_params(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    if kind == "percentiles":
        return {"field": options["field"], "percents": [_number(x) for x in options["percents"]]}
    return {"field": options["field"]}


# Kibana's stock options for each bucket aggregation, as its editor saves them (json.loads keeps
# the order); the nulls are the panel's own options. Terms order by the first metric, descending.
_BUCKET_PARAMS = json.loads("""{
  "date_histogram": {"field": null, "useNormalizedEsInterval": true, "scaleMetricValues": false,
    "interval": null, "drop_partials": false, "min_doc_count": 1, "extended_bounds": {}},
  "terms": {"field": null, "orderBy": "1", "order": "desc", "size": null, "otherBucket": false,
    "otherBucketLabel": "Other", "missingBucket": false, "missingBucketLabel": "Missing"},
  "histogram": {"field": null, "interval": null, "min_doc_count": false, "has_extended_bounds": false,
    "extended_bounds": {"min": "", "max": ""}}}""")


def _bucket_params(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    given = dict(options)
    if kind == "date_histogram":
        given["interval"] = _kibana_interval(given.pop("fixed_interval"))
    params: dict[str, Any] = copy.deepcopy(_BUCKET_PARAMS[kind])
    params.update(given)  # keys already there keep their place
    return params


# Kibana's stock options for its charts, as its editor saves them (json.loads keeps the order);
# _chart_params fills in the nulls from the panel's Chart.
_PIE_PARAMS = json.loads("""{"type": "pie", "addTooltip": true, "legendDisplay": "show", "legendPosition": "right",
  "isDonut": true, "labels": {"show": true, "values": true, "last_level": true, "truncate": 100},
  "palette": {"type": "palette", "name": "default"}, "distinctColors": true, "nestedLegend": false}""")
_XY_PARAMS = json.loads("""{"type": null, "grid": {"categoryLines": false},
  "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": true,
    "scale": {"type": "linear"}, "labels": {"show": true, "filter": true, "truncate": 100}, "title": {}}],
  "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": true,
    "scale": {"type": "linear", "mode": null}, "labels": {"show": true, "rotate": 0, "filter": false, "truncate": 100},
    "title": {"text": null}}],
  "seriesParams": null, "addTooltip": true, "addLegend": true, "legendPosition": "right", "times": [],
  "addTimeMarker": false,
  "thresholdLine": {"show": false, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
  "labels": {}, "detailedTooltip": true, "palette": {"type": "palette", "name": "default"},
  "fittingFunction": "linear", "radiusRatio": 9}""")
_SERIES = json.loads("""{"show": true, "type": null, "mode": null, "data": null, "valueAxis": "ValueAxis-1",
  "drawLinesBetweenPoints": true, "lineWidth": 2, "interpolate": "linear", "showCircles": true}""")


def _chart_params(chart: Chart, metric_ids: list[str]) -> dict[str, Any]:
    if chart.type == "pie":
        return copy.deepcopy(_PIE_PARAMS)
    params = copy.deepcopy(_XY_PARAMS)
    params["type"] = chart.type
    (axis,) = params["valueAxes"]
    axis["scale"]["mode"] = "percentage" if chart.percentage else "normal"
    axis["title"]["text"] = chart.value_label
    mode = "stacked" if chart.stacked else "normal"
    params["seriesParams"] = [
        {**_SERIES, "type": chart.type, "mode": mode, "data": {"label": chart.value_label, "id": metric_id}}
        for metric_id in metric_ids
    ]
    return params


def _saved_object(
    kind: str, oid: str, attributes: dict[str, Any], refs: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": oid,
        "references": refs,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION,
    }


def _data_view(view: DataView) -> dict[str, Any]:
    attributes = {"name": view.name, "timeFieldName": TIME_FIELD, "title": view.pattern}
    return _saved_object("index-pattern", view.id, attributes, [])


def _visualization(panel: Panel, view: DataView) -> dict[str, Any]:
    aggs = vis_aggs(panel.aggs, panel.chart)
    metric_ids = [a["id"] for a in aggs if a["schema"] == "metric"]
    state = {
        "title": panel.title,
        "type": panel.chart.type,
        "aggs": aggs,
        "params": _chart_params(panel.chart, metric_ids),
    }
    attributes = {
        "description": "",
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": json.dumps({**_EMPTY_QUERY, "indexRefName": INDEX_REF})
        },
        "title": panel.title,
        "uiStateJSON": "{}",
        "version": 1,
        "visState": json.dumps(state),
    }
    return _saved_object(
        "visualization", panel.id, attributes, [{"id": view.id, "name": INDEX_REF, "type": "index-pattern"}]
    )


def _dashboard(panels: Sequence[Panel]) -> dict[str, Any]:
    entries, refs = [], []
    for n, p in enumerate(panels, start=1):
        key = f"p{n}"
        entries.append(
            {
                "version": PANEL_VERSION,
                "type": "visualization",
                "gridData": {"x": p.grid.x, "y": p.grid.y, "w": p.grid.w, "h": p.grid.h, "i": key},
                "panelIndex": key,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{key}",
            }
        )
        refs.append({"id": p.id, "name": f"{key}:panel_{key}", "type": "visualization"})
    options = {
        "useMargins": True,
        "syncColors": False,
        "syncCursor": True,
        "syncTooltips": False,
        "hidePanelTitles": False,
    }
    attributes = {
        "description": DASHBOARD_DESCRIPTION,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(_EMPTY_QUERY)},
        "optionsJSON": json.dumps(options),
        "panelsJSON": json.dumps(entries),
        "refreshInterval": {"pause": False, "value": 60_000},
        "timeFrom": "now-24h",
        "timeRestore": True,
        "timeTo": "now",
        "title": DASHBOARD_TITLE,
        "version": 1,
    }
    return _saved_object("dashboard", DASHBOARD_ID, attributes, refs)
