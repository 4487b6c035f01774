"""Composable index templates for the request events and the monitoring documents.

The mappings are explicit and follow ``docs/request-events.md`` (requests) and its "Monitoring
documents" section: identifiers and categories are ``keyword`` (aggregatable), free text is
``text``, times are ``date``, counts ``long``/``integer``, amounts ``float``. ``dynamic: false``
keeps any extra field in ``_source`` without mapping it, so a new field in an event can neither
explode the mapping nor flip a type; ``mapping.total_fields.limit`` bounds it anyway.
``price_alchemy.listings`` is a plain object array (not ``nested``): Kibana's aggregation-based
panels and the drift queries aggregate its fields directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from price_alchemy.names import (
    MONITORING_INDEX_PATTERN,
    MONITORING_INDEX_PREFIX,
    REQUESTS_INDEX_PATTERN,
    REQUESTS_INDEX_PREFIX,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Template names: one template per index family, named after its prefix.
REQUESTS_TEMPLATE = REQUESTS_INDEX_PREFIX
MONITORING_TEMPLATE = MONITORING_INDEX_PREFIX
#: Bumped whenever a mapping changes; stored in the template's ``_meta``.
TEMPLATE_VERSION = 1
#: Above Elasticsearch's built-in templates (priority 100 and lower for ``logs-*`` etc.).
PRIORITY = 200

KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
TEXT_WITH_KEYWORD: dict[str, Any] = {
    "type": "text",
    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
}


def _t(kind: str) -> dict[str, Any]:
    return dict(KEYWORD) if kind == "keyword" else {"type": kind}


def _obj(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"properties": fields}


LISTING_MAPPING = _obj(
    item_condition_id=_t("integer"),
    shipping=_t("integer"),
    category_name=_t("keyword"),
    top_category=_t("keyword"),
    brand_name=_t("keyword"),
    name=TEXT_WITH_KEYWORD,
    name_length=_t("integer"),
    description_length=_t("integer"),
    price=_t("float"),
    price_low=_t("float"),
    price_high=_t("float"),
)

REQUESTS_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": _t("date"),
        "ecs": _obj(version=_t("keyword")),
        "event": _obj(
            id=_t("keyword"),
            kind=_t("keyword"),
            category=_t("keyword"),
            type=_t("keyword"),
            dataset=_t("keyword"),
            outcome=_t("keyword"),
            duration=_t("long"),
        ),
        "http": _obj(request=_obj(method=_t("keyword")), response=_obj(status_code=_t("integer"))),
        "url": _obj(path=_t("keyword")),
        "service": _obj(name=_t("keyword"), version=_t("keyword")),
        "error": _obj(type=_t("keyword"), message=_t("text")),
        "price_alchemy": _obj(
            route=_t("keyword"),
            latency_ms=_t("float"),
            batch_size=_t("integer"),
            model=_obj(name=_t("keyword"), version=_t("keyword"), alias=_t("keyword")),
            listings=LISTING_MAPPING,
        ),
    },
}

MONITORING_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": _t("date"),
        "event": _obj(kind=_t("keyword"), dataset=_t("keyword")),
        "monitor": _obj(
            window_start=_t("date"),
            window_end=_t("date"),
            model_version=_t("keyword"),
            requests=_t("long"),
            drifted=_t("boolean"),
            report_path=_t("keyword"),
        ),
        "drift": _obj(
            type=_t("keyword"),
            feature=_t("keyword"),
            kind=_t("keyword"),
            statistic=_t("keyword"),
            value=_t("float"),
            threshold=_t("float"),
            watch_threshold=_t("float"),
            status=_t("keyword"),
            drifted=_t("boolean"),
            drifted_features=_t("keyword"),
            listings=_t("long"),
            requests=_t("long"),
            window=_obj(start=_t("date"), end=_t("date"), hours=_t("float")),
        ),
        "price_alchemy": _obj(model=_obj(name=_t("keyword"), version=_t("keyword"))),
    },
}


def _settings(total_fields: int) -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        # 0 on a single node (green), 1 as soon as a second node joins
        "auto_expand_replicas": "0-1",
        "mapping": {"total_fields": {"limit": total_fields}},
    }


TEMPLATES: dict[str, dict[str, Any]] = {
    REQUESTS_TEMPLATE: {
        "index_patterns": [REQUESTS_INDEX_PATTERN],
        "template": {"settings": _settings(200), "mappings": REQUESTS_MAPPING},
    },
    MONITORING_TEMPLATE: {
        "index_patterns": [MONITORING_INDEX_PATTERN],
        "template": {"settings": _settings(100), "mappings": MONITORING_MAPPING},
    },
}


def ensure_templates(client: Elasticsearch) -> list[str]:
    """Create or update both index templates; a no-op when they are already at this version.

    Returns the names of the templates written. Templates apply to indices created afterwards:
    call this before the first document of a day is indexed (the shipper does, at start).
    """
    written = []
    for name, body in TEMPLATES.items():
        found = client.options(ignore_status=404).indices.get_index_template(name=name)
        current = [t for t in found.body.get("index_templates", []) if t.get("name") == name]
        if current and current[0]["index_template"].get("_meta", {}).get("version") == TEMPLATE_VERSION:
            continue
        client.indices.put_index_template(
            name=name,
            index_patterns=body["index_patterns"],
            template=body["template"],
            priority=PRIORITY,
            meta={"version": TEMPLATE_VERSION, "managed_by": "price_alchemy.monitoring.templates"},
        )
        written.append(name)
    return written


def field_paths(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a mapping into ``{"a.b.c": type}`` (multi-fields as ``a.b.keyword``)."""
    paths: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            paths.update(field_paths(spec, f"{path}."))
            continue
        paths[path] = spec["type"]
        for sub, subspec in spec.get("fields", {}).items():
            paths[f"{path}.{sub}"] = subspec["type"]
    return paths
