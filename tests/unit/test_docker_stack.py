"""Static checks of the docker/ stack, which cannot run here (no Docker engine).

They catch what breaks such a stack silently: a setting name the package does not read, a mounted
file that is not in the repository, a build stage or COPY source that does not exist, images whose
versions disagree with the lock, secrets committed in the example environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from price_alchemy.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def _settings_env_names() -> set[str]:
    names = {f"PRICE_ALCHEMY_{name.upper()}" for name in Settings.model_fields}
    return names | {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}


def _environments(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service.get("environment") or {} for name, service in compose["services"].items()}


def test_every_price_alchemy_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = _settings_env_names()
    for service, env in _environments(compose).items():
        for name in env:
            if name.startswith("PRICE_ALCHEMY_"):
                assert name in known, f"{service}: {name} is not read by price_alchemy.config.Settings"


def test_the_api_requires_a_key_and_ships_through_logstash(compose: dict[str, Any]) -> None:
    env = _environments(compose)
    assert env["api"]["PRICE_ALCHEMY_API_KEY"].startswith("${PRICE_ALCHEMY_API_KEY:?")
    assert env["shipper"]["PRICE_ALCHEMY_SHIP_TO"] == "logstash"
    assert env["shipper"]["PRICE_ALCHEMY_LOGSTASH_URL"].startswith("http://logstash:")
    api_volumes = compose["services"]["api"]["volumes"]
    assert api_volumes == compose["services"]["shipper"]["volumes"], "the shipper must read the API's buffer"


def _host_mounts(compose: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            host = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", host)  # ${VAR:-default} -> default
            if host.startswith("."):
                mounts.append((name, host))
    return mounts


def test_every_mounted_file_is_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = _host_mounts(compose)
    assert any("logstash/pipeline" in host for _, host in mounts)
    for service, host in mounts:
        assert (DOCKER / host).exists(), f"{service} mounts {host}, which does not exist"


def _stages(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile.read_text(), flags=re.MULTILINE))


def test_builds_name_existing_dockerfiles_stages_and_sources(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        if "target" in build:
            assert build["target"] in _stages(dockerfile), f"{name}: no stage {build['target']}"
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} not in the repository"


def _locked(package: str) -> str:
    match = re.search(rf"^{package}==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert match, f"{package} not in requirements.txt"
    return match.group(1)


def test_image_versions_agree_with_the_lock(compose: dict[str, Any]) -> None:
    airflow_base = re.search(
        r"^FROM apache/airflow:(\S+)-python", (DOCKER / "Dockerfile.airflow").read_text(), re.M
    )
    assert airflow_base and airflow_base.group(1) == _locked("apache-airflow")
    elastic = {
        name: re.sub(r"\$\{ELASTIC_VERSION:-([^}]*)\}", r"\1", service["image"]).rsplit(":", 1)[1]
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("docker.elastic.co/")
    }
    assert set(elastic) == {"elasticsearch", "logstash", "kibana"}
    versions = set(elastic.values())
    assert len(versions) == 1, f"Elastic images disagree: {elastic}"
    (server,) = versions
    local = re.search(r'^VERSION = "(\S+)"$', (ROOT / "scripts" / "elasticsearch.py").read_text(), re.M)
    assert local and local.group(1) == server, "dev/test node and the stack must run the same Elasticsearch"
    assert server.split(".")[0] == _locked("elasticsearch").split(".")[0], (
        "client major must match the server"
    )


def test_the_example_environment_holds_no_secret_values() -> None:
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            if any(word in name for word in ("PASSWORD", "SECRET", "API_KEY")):
                assert value == "", f"{name} has a value in .env.example"
    assert "docker/.env" in (ROOT / ".gitignore").read_text().split()
