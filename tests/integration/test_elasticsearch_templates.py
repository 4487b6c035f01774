"""Index templates against the real node: idempotent, and the mappings an index actually gets."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from price_alchemy.monitoring.templates import (
    MONITORING_TEMPLATE,
    REQUESTS_TEMPLATE,
    ensure_templates,
    field_paths,
)

pytestmark = [pytest.mark.integration]


def test_templates_are_created_once_and_then_left_alone(es_clean: Elasticsearch) -> None:
    assert sorted(ensure_templates(es_clean)) == [MONITORING_TEMPLATE, REQUESTS_TEMPLATE]
    assert ensure_templates(es_clean) == []  # same version: nothing rewritten
    found = es_clean.indices.get_index_template(name="price-alchemy-*")
    by_name = {t["name"]: t["index_template"] for t in found["index_templates"]}
    assert by_name[REQUESTS_TEMPLATE]["index_patterns"] == ["price-alchemy-requests*"]
    assert by_name[MONITORING_TEMPLATE]["index_patterns"] == ["price-alchemy-monitoring*"]


def test_a_new_requests_index_gets_the_explicit_mapping(es_clean: Elasticsearch) -> None:
    ensure_templates(es_clean)
    es_clean.indices.create(index="price-alchemy-requests-2024.05.01")
    mapping = es_clean.indices.get_mapping(index="price-alchemy-requests-2024.05.01")
    props = mapping["price-alchemy-requests-2024.05.01"]["mappings"]
    assert props["dynamic"] == "false"
    paths = field_paths(props)
    assert paths["@timestamp"] == "date"
    assert paths["event.id"] == "keyword"
    assert paths["event.duration"] == "long"
    assert paths["http.response.status_code"] == "integer"
    assert paths["error.message"] == "text"
    assert paths["price_alchemy.latency_ms"] == "float"
    assert paths["price_alchemy.listings.name"] == "text"
    assert paths["price_alchemy.listings.name.keyword"] == "keyword"
    assert paths["price_alchemy.listings.brand_name"] == "keyword"
    assert paths["price_alchemy.listings.price_high"] == "float"
    settings = es_clean.indices.get_settings(index="price-alchemy-requests-2024.05.01")
    index_settings = settings["price-alchemy-requests-2024.05.01"]["settings"]["index"]
    assert index_settings["mapping"]["total_fields"]["limit"] == "200"


def test_unknown_fields_are_kept_but_not_mapped(es_clean: Elasticsearch) -> None:
    ensure_templates(es_clean)
    index = "price-alchemy-requests-2024.05.02"
    doc = {"@timestamp": "2024-05-02T10:00:00.000Z", "event": {"id": "r1"}, "surprise": {"a": 1}}
    es_clean.index(index=index, id="r1", document=doc, refresh=True)
    props = es_clean.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert "surprise" not in props
    assert es_clean.get(index=index, id="r1")["_source"]["surprise"] == {"a": 1}


def test_monitoring_index_mapping(es_clean: Elasticsearch) -> None:
    ensure_templates(es_clean)
    es_clean.indices.create(index="price-alchemy-monitoring-2024.05")
    props = es_clean.indices.get_mapping(index="price-alchemy-monitoring-2024.05")
    paths = field_paths(props["price-alchemy-monitoring-2024.05"]["mappings"])
    assert paths["monitor.window_start"] == "date"
    assert paths["monitor.requests"] == "long"
    assert paths["drift.value"] == "float"
    assert paths["drift.drifted"] == "boolean"
    assert paths["monitor.report_path"] == "keyword"
