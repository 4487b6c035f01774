"""The Logstash pipeline agrees with the index template and the event contract (checked statically:
Logstash cannot run on the development machines)."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from price_alchemy.monitoring.sinks import index_name
from price_alchemy.monitoring.templates import REQUESTS_MAPPING, TEMPLATES, field_paths

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "logstash" / "pipeline" / "price-alchemy.conf"
CONTRACT = ROOT / "docs" / "request-events.md"
#: Logstash's own names, not event fields.
LOGSTASH_FIELDS = {"tags", "_@timestamp", "message"}


def _requests_output(conf: str) -> str:
    """The elasticsearch output block that writes request events (the one with a document_id)."""
    blocks = re.findall(r"elasticsearch\s*\{(.*?)\n\s*\}", conf, flags=re.S)
    (block,) = [b for b in blocks if "document_id" in b]
    return block


def _setting(block: str, name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=>\s*"([^"]*)"', block, flags=re.M)
    assert match, f"{name} not set"
    return match.group(1)


def _referenced_fields(conf: str) -> set[str]:
    """Every ``[a][b]`` field reference (and ``@timestamp``) outside comments, as ``a.b``."""
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    refs = {".".join(re.findall(r"\[([^\]\[]+)\]", m)) for m in re.findall(r"(?:\[[^\]\[\"]+\])+", code)}
    refs |= {"@timestamp"} if '"@timestamp"' in code else set()
    return {r for r in refs if not r.startswith("@metadata") and r not in LOGSTASH_FIELDS}


def contract_fields(section: str = "# Request events") -> dict[str, str]:
    """``{field: mapping type}`` from the first table after ``section`` in docs/request-events.md."""
    text = CONTRACT.read_text()
    table = text[text.index(section) :].split("\n## ", 1)[0]
    fields: dict[str, str] = {}
    for row in re.findall(r"^\| (`.+?) \| (.+?) \|", table, flags=re.M):
        names = re.findall(r"`([^`]+)`", row[0])
        kinds = row[1].split(" / ")  # "keyword / text": one type per name, in order
        first = None
        for i, name in enumerate(names):
            if name.startswith(".") and first:
                name = first.rsplit(".", 1)[0] + name
            first = first or name
            fields[name] = kinds[i] if len(kinds) == len(names) else row[1]
    return fields


def test_requests_index_pattern_matches_the_template_and_the_direct_shipper() -> None:
    block = _requests_output(PIPELINE.read_text())
    pattern = _setting(block, "index")
    assert pattern == "price-alchemy-requests-%{+YYYY.MM.dd}"
    when = datetime(2024, 5, 1, 23, 59)
    rendered = pattern.replace("%{+YYYY.MM.dd}", when.strftime("%Y.%m.%d"))
    assert rendered == index_name({"@timestamp": "2024-05-01T23:59:00Z"})
    (template,) = [
        t for t in TEMPLATES.values() if any(fnmatch.fnmatch(rendered, p) for p in t["index_patterns"])
    ]
    assert template["template"]["mappings"] is REQUESTS_MAPPING


def test_documents_are_created_with_the_request_id() -> None:
    block = _requests_output(PIPELINE.read_text())
    assert _setting(block, "action") == "create"
    assert _setting(block, "document_id") == "%{[event][id]}"
    assert re.search(r"^\s*manage_template\s*=>\s*false", block, flags=re.M)  # ours, composable


def test_every_field_the_pipeline_uses_is_mapped_and_in_the_contract() -> None:
    used = _referenced_fields(PIPELINE.read_text())
    assert {"event.id", "@timestamp"} <= used
    mapped = field_paths(REQUESTS_MAPPING)
    contract = contract_fields()
    for name in used:
        assert name in mapped, f"the pipeline uses {name}, which the index template does not map"
        assert name in contract, f"the pipeline uses {name}, which docs/request-events.md does not define"


def test_the_contract_and_the_template_list_the_same_fields() -> None:
    documented = {name: kind for name, kind in contract_fields().items() if "object" not in kind}
    mapped = {
        name: kind for name, kind in field_paths(REQUESTS_MAPPING).items() if not name.endswith(".keyword")
    }
    assert set(documented) == set(mapped)
    for name, kind in documented.items():
        assert mapped[name] in kind, f"{name}: documented as {kind}, mapped as {mapped[name]}"


def test_unparsable_events_have_a_dead_letter_path() -> None:
    conf = PIPELINE.read_text()
    assert re.search(r'if "_jsonparsefailure" in \[tags\]', conf)
    assert 'index => "price-alchemy-deadletter-%{+YYYY.MM.dd}"' in conf
    settings = yaml.safe_load((ROOT / "logstash" / "config" / "logstash.yml").read_text())
    assert settings["dead_letter_queue.enable"] is True
    assert settings["queue.type"] == "persisted"


def test_the_stack_mounts_this_pipeline_and_reaches_its_port() -> None:
    pipelines = yaml.safe_load((ROOT / "logstash" / "config" / "pipelines.yml").read_text())
    assert [p["path.config"].rsplit("/", 1)[1] for p in pipelines] == [PIPELINE.name]
    port = re.search(r"http\s*\{[^}]*?port\s*=>\s*(\d+)", PIPELINE.read_text(), flags=re.S)
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    url = compose["services"]["shipper"]["environment"]["PRICE_ALCHEMY_LOGSTASH_URL"]
    assert port and url.endswith(f":{port.group(1)}")
    env = compose["services"]["logstash"]["environment"]
    assert "${ELASTICSEARCH_HOSTS" in PIPELINE.read_text() and "ELASTICSEARCH_HOSTS" in env
