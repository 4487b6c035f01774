"""Static checks of the docker/ stack, which cannot run here (no Docker engine).

They catch what breaks such a stack silently: a setting name the package does not read, a mounted
file that is not in the repository, a build stage or COPY source that does not exist, images whose
versions disagree with the lock, secrets committed in the example environment. And that the stack
is closed by default (docs/security.md): only the four UIs are published, on 127.0.0.1 unless
BIND_ADDRESS says otherwise; MLflow runs its basic-auth app, Elasticsearch and Kibana their
security; every secret is a required ${VAR} that .env.example lists empty, never a literal; each
client of MLflow and Elasticsearch logs in as its own user with only its own rights. The two
one-shot setup jobs (docker/setup/*.sh) run here for real, against stub servers.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from price_alchemy import names
from price_alchemy.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SETUP = DOCKER / "setup"
ROLES = SETUP / "elasticsearch-roles"
PIPELINE = ROOT / "logstash" / "pipeline" / "price-alchemy.conf"
#: Environment variable names that hold a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN")
#: A compose reference ${VAR}, ${VAR:-default}, ${VAR:?message} (not an escaped $${VAR}).
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
#: What a person opens: the only services that may publish a port, and their container ports.
PUBLISHED = {"api": 8000, "airflow-apiserver": 8080, "mlflow": 5000, "kibana": 5601}


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


def _example_env() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_the_example_environment_holds_no_secret_values() -> None:
    example = _example_env()
    secrets = [name for name in example if SECRET_NAME.search(name)]
    assert len(secrets) >= 12, secrets  # the check below must have something to check
    for name in secrets:
        assert example[name] == "", f"{name} has a value in .env.example"
    assert "docker/.env" in (ROOT / ".gitignore").read_text().split()


# --- closed by default: what is published -------------------------------------------------------


def _with_defaults(text: str) -> str:
    """``text`` as compose renders it when the variables are unset: ``${VAR:-default}`` -> default."""
    return REFERENCE.sub(lambda m: m.group(3) if m.group(2) == ":-" else m.group(0), text)


def _published(compose: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """``(service, raw host IP, host IP with defaults, container port)`` of every published port."""
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                raw = str(port.get("host_ip", ""))
                published.append((name, raw, _with_defaults(raw), int(port["target"])))
                continue
            # short syntax: [IP:][HOST:]CONTAINER; IP may be a ${VAR:-default} holding no colon
            match = re.fullmatch(r"(?:(\$\{[^}]*\}|[^:]*):)?(?:([^:]*):)?(\d+)(?:/\w+)?", str(port))
            assert match, f"{name}: cannot parse port {port!r}"
            raw = (match.group(1) or "") if match.group(2) is not None else ""  # HOST:CONTAINER: no IP
            published.append((name, raw, _with_defaults(raw), int(match.group(3))))
    return published


def test_only_what_a_person_opens_is_published_and_on_loopback_by_default(compose: dict[str, Any]) -> None:
    published = _published(compose)
    assert {(name, port) for name, _, _, port in published} == set(PUBLISHED.items())
    for name, raw, host_ip, port in published:
        assert host_ip == "127.0.0.1", f"{name}:{port} is published on {host_ip or 'every interface'}"
        assert raw == "${BIND_ADDRESS:-127.0.0.1}", f"{name}:{port}: BIND_ADDRESS must be the one knob"
    assert _example_env()["BIND_ADDRESS"] == "127.0.0.1"
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name} would bypass the port bindings"


def test_postgres_elasticsearch_and_logstash_are_not_published(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "elasticsearch", "logstash"):
        assert name in services
        assert not services[name].get("ports"), f"{name} publishes {services[name]['ports']}"
    internal = {5432, 9200, 9300, 9600}  # Postgres, Elasticsearch HTTP and transport, Logstash API
    assert not [(n, p) for n, _, _, p in _published(compose) if p in internal]
    # Logstash's monitoring API answers in its own container only
    settings = yaml.safe_load((ROOT / "logstash" / "config" / "logstash.yml").read_text())
    assert settings["api.http.host"] == "127.0.0.1"


# --- closed by default: who may log in ---------------------------------------------------------


def _required(value: Any) -> str | None:
    """The variable a value is exactly a required reference to (``${VAR:?message}``), else None."""
    match = REFERENCE.fullmatch(str(value))
    return match.group(1) if match and match.group(2) == ":?" else None


def _depends_on(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Every service ``name`` waits for, transitively, with the condition of the nearest edge."""
    found: dict[str, str] = {}
    todo = [name]
    while todo:
        deps = compose["services"][todo.pop()].get("depends_on", {})
        for dep, spec in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            if dep not in found:
                found[dep] = spec.get("condition", "service_started")
                todo.append(dep)
    return found


def test_elasticsearch_and_kibana_run_with_security(compose: dict[str, Any]) -> None:
    env = _environments(compose)
    es = env["elasticsearch"]
    assert es["xpack.security.enabled"] == "true"
    assert _required(es["ELASTIC_PASSWORD"]) == "ELASTIC_PASSWORD"
    assert not [k for k in es if "anonymous" in k.lower()], "anonymous access to Elasticsearch"
    health = " ".join(compose["services"]["elasticsearch"]["healthcheck"]["test"])
    assert "-u " in health, "with security on, an unauthenticated health check can never pass"
    kibana = env["kibana"]
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert _required(kibana["ELASTICSEARCH_PASSWORD"]) == "KIBANA_SYSTEM_PASSWORD"
    assert not [k for k in kibana if "ANONYMOUS" in k or "AUTHC_PROVIDERS" in k], "anonymous Kibana"
    assert _depends_on(compose, "kibana")["elasticsearch-setup"] == "service_completed_successfully"
    airflow = env["airflow-apiserver"]
    assert "SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in " ".join(airflow), "Airflow UI without login"
    assert _required(airflow["AIRFLOW__API_AUTH__JWT_SECRET"]) == "AIRFLOW_JWT_SECRET"


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _flag(command: list[str], flag: str) -> str | None:
    for i, arg in enumerate(command):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
    return None


def _mounted(service: dict[str, Any], target: str) -> Path:
    (host,) = [v.split(":")[0] for v in service.get("volumes", []) if v.split(":")[1] == target]
    return (DOCKER / host).resolve()


def test_mlflow_runs_the_basic_auth_app_with_its_dependencies(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    command = _command(mlflow)
    assert command[0] == "server" and _flag(command, "--app-name") == "basic-auth"
    env = mlflow["environment"]
    assert _required(env["MLFLOW_AUTH_ADMIN_PASSWORD"]) == "MLFLOW_ADMIN_PASSWORD"
    assert _required(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == "MLFLOW_FLASK_SERVER_SECRET_KEY"
    config = _mounted(mlflow, env["MLFLOW_AUTH_CONFIG_PATH"])
    ini = config.read_text()
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M), "a password in the auth config"
    assert re.search(r"^default_permission = (READ|NO_PERMISSIONS)$", ini, re.M), "writes need a grant"
    # the database password reaches the server as PGPASSWORD, never on its command line
    backend = _flag(command, "--backend-store-uri") or ""
    assert re.fullmatch(r"postgresql\+psycopg2://mlflow@postgres/mlflow", backend), backend
    assert _required(env["PGPASSWORD"]) == "MLFLOW_DB_PASSWORD"
    assert "*" not in (_flag(command, "--allowed-hosts") or "*"), "MLflow must check the Host header"
    allowed = _with_defaults(_flag(command, "--allowed-hosts") or "").split(",")
    tracking = compose["x-price-alchemy-env"]["MLFLOW_TRACKING_URI"]
    assert tracking.split("://", 1)[1].rstrip("/") in allowed, "the clients' Host header is refused"
    # the auth app imports Flask-WTF, which is not in the lock: the mlflow stage installs the extra
    extra = [
        re.split(r"[<>=!;\s\[]", r, maxsplit=1)[0].lower()
        for r in importlib.metadata.requires("mlflow") or []
        if re.search(r"extra\s*==\s*['\"]auth['\"]", r)
    ]
    stage = (DOCKER / "Dockerfile").read_text().split("AS mlflow", 1)[1].split("\nFROM ", 1)[0]
    installed = {p.split("==")[0].lower() for p in re.findall(r"\b[\w.-]+==[\w.]+", stage)}
    assert extra and set(extra) <= installed, (
        f"mlflow[auth] needs {extra}; the mlflow stage installs {installed}"
    )


#: The MLflow clients of the stack and the prefix of their account in mlflow-setup's environment.
MLFLOW_CLIENTS = {"airflow-scheduler": "MLFLOW_AIRFLOW", "api": "MLFLOW_API"}


def test_every_mlflow_client_logs_in_as_its_own_user(compose: dict[str, Any]) -> None:
    env = _environments(compose)
    setup = env["mlflow-setup"]
    holders = {name for name, e in env.items() if "MLFLOW_TRACKING_PASSWORD" in e}
    assert holders == set(MLFLOW_CLIENTS), "MLflow credentials belong to the clients only"
    users = {}
    for name, prefix in MLFLOW_CLIENTS.items():
        user = env[name]["MLFLOW_TRACKING_USERNAME"]
        assert user == setup[f"{prefix}_USERNAME"], f"{name} logs in as a user mlflow-setup does not create"
        password = _required(env[name]["MLFLOW_TRACKING_PASSWORD"])
        assert password == f"{prefix}_PASSWORD" == _required(setup[f"{prefix}_PASSWORD"])
        assert _depends_on(compose, name)["mlflow-setup"] == "service_completed_successfully"
        users[name] = user
    assert len(set(users.values())) == len(users), users
    assert _with_defaults(setup["MLFLOW_ADMIN_USERNAME"]) not in users.values(), "a client is the admin"
    # LocalExecutor: the tasks run in the scheduler, the only Airflow container with credentials
    assert env["airflow-scheduler"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # the registered model mlflow-setup creates and grants on is the one the clients use
    model = {
        _with_defaults(e["PRICE_ALCHEMY_MODEL_NAME"]) for n, e in env.items() if n in {*users, "mlflow-setup"}
    }
    assert model == {Settings.model_fields["model_name"].default}


#: The Elasticsearch clients: ``service: (username variable, password variable)`` in their env.
ES_CLIENTS = {
    "shipper": ("PRICE_ALCHEMY_ELASTICSEARCH_USERNAME", "PRICE_ALCHEMY_ELASTICSEARCH_PASSWORD"),
    "airflow-scheduler": ("PRICE_ALCHEMY_ELASTICSEARCH_USERNAME", "PRICE_ALCHEMY_ELASTICSEARCH_PASSWORD"),
    "logstash": ("LOGSTASH_ES_USERNAME", "LOGSTASH_ES_PASSWORD"),
    "kibana": ("ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD"),
    "kibana-setup": ("KIBANA_USERNAME", "KIBANA_PASSWORD"),
}


def _es_accounts(compose: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``service: (username, password variable)`` of every Elasticsearch client."""
    env = _environments(compose)
    accounts = {}
    for name, (user_var, password_var) in ES_CLIENTS.items():
        password = _required(env[name].get(password_var))
        assert password, f"{name} has no required {password_var}"
        accounts[name] = (env[name][user_var], password)
    return accounts


def test_each_elasticsearch_client_has_its_own_user(compose: dict[str, Any]) -> None:
    env = _environments(compose)
    direct = {name for name, e in env.items() if "PRICE_ALCHEMY_ELASTICSEARCH_URL" in e}
    assert direct == {"shipper", "airflow-scheduler"}, "the API never talks to Elasticsearch"
    accounts = _es_accounts(compose)
    users = [user for user, _ in accounts.values()]
    assert len(set(users)) == len(users), f"shared Elasticsearch users: {accounts}"
    assert len({p for _, p in accounts.values()}) == len(accounts), f"shared passwords: {accounts}"
    assert "elastic" not in users, "no client runs as the superuser"
    setup = env["elasticsearch-setup"]
    created = {
        setup[k]: _required(setup[k.replace("_USERNAME", "_PASSWORD")])
        for k in setup
        if k.endswith("_ES_USERNAME")
    }
    for name, (user, password) in accounts.items():
        if user != "kibana_system":  # built in: elasticsearch-setup sets only its password
            assert created.get(user) == password, f"{name}: elasticsearch-setup does not create {user}"
        assert _depends_on(compose, name)["elasticsearch-setup"] == "service_completed_successfully"
    assert _required(setup["KIBANA_SYSTEM_PASSWORD"]) == accounts["kibana"][1]
    # Logstash's outputs log in with exactly the variables its service sets
    conf = PIPELINE.read_text()
    outputs = re.findall(r"elasticsearch\s*\{(.*?)\n\s*\}", conf, flags=re.S)
    assert len(outputs) == 2
    for block in outputs:
        assert re.search(r'^\s*user\s*=>\s*"\$\{LOGSTASH_ES_USERNAME\}"', block, re.M)
        assert re.search(r'^\s*password\s*=>\s*"\$\{LOGSTASH_ES_PASSWORD\}"', block, re.M)


# --- secrets ---------------------------------------------------------------------------------


def _strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every scalar of the compose file with where it is (``services.api.environment.X``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")
    elif node is not None:
        yield where, str(node)


def _literal_secrets(text: str) -> list[str]:
    """Secrets written out in ``text`` rather than referenced (``${VAR}`` in compose or Logstash,
    ``$${VAR}`` from a container's own environment)."""
    text = REFERENCE.sub("<ref>", text).replace("$${", "<ref>{")
    found = []
    for pattern in (
        r"(?i)\b\w*(?:password|passwd|secret|token|api_?key)\w*\s*(?:=>|[=:])\s*\"?([^\s\",;}]+)",
        r"://[^/@\s:]+:([^@/\s]+)@",  # user:password@host in a URL
        r"(?:-u|--user)\s+\"?[^:\s\"]+:([^\s\"]+)",  # curl -u user:password
    ):
        found += [value for value in re.findall(pattern, text) if not value.startswith("<ref>")]
    return found


def test_no_literal_secret_in_the_compose_or_logstash_files(compose: dict[str, Any]) -> None:
    for where, value in _strings(compose):
        assert not _literal_secrets(value), f"{where}: literal secret in {value!r}"
        name = where.rsplit(".", 1)[-1]
        if ".environment." in where and SECRET_NAME.search(name):
            assert _required(value), f"{where} must be exactly ${{VAR:?message}}, not {value!r}"
    for path in [PIPELINE, *(ROOT / "logstash" / "config").iterdir(), DOCKER / "mlflow" / "basic_auth.ini"]:
        assert not _literal_secrets(path.read_text()), f"{path.relative_to(ROOT)}: literal secret"
    for block in re.findall(r"(\w+)\s*=>\s*\"([^\"]*)\"", PIPELINE.read_text()):
        if re.search(r"(?i)password|secret|token|api_key", block[0]):
            assert re.fullmatch(r"\$\{[A-Z_]+\}", block[1]), (
                f"Logstash {block[0]} must be ${{VAR}}, no default"
            )


def test_every_secret_is_a_required_variable_the_example_lists_empty(compose: dict[str, Any]) -> None:
    example = _example_env()
    referenced: set[str] = set()
    for where, value in _strings(compose):
        for name, op, _ in REFERENCE.findall(value):
            if SECRET_NAME.search(name):
                referenced.add(name)
                assert op == ":?", f"{where}: ${{{name}}} must be required (:?), never defaulted"
                assert example.get(name) == "", f"{name} ({where}) is not listed empty in .env.example"
    assert {
        "ELASTIC_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_API_PASSWORD",
        "LOGSTASH_ES_PASSWORD",
    } <= referenced
    unused = {name for name in example if SECRET_NAME.search(name)} - referenced
    assert not unused, f".env.example lists secrets nothing uses: {unused}"
    # $${VAR} in a healthcheck reads the container's own environment: it must hold the secret
    for name, service in compose["services"].items():
        for var in re.findall(r"\$\$\{(\w+)\}", json.dumps(service.get("healthcheck", {}))):
            assert _required((service.get("environment") or {}).get(var)), f"{name}: $${{{var}}} unset"


# --- the one-shot setup jobs, run against stub servers --------------------------------------


class _Stub(BaseHTTPRequestHandler):
    """Records every request; ``answer(method, path, body) -> (status, json)`` says what to reply."""

    received: ClassVar[list[dict[str, Any]]]
    answer: ClassVar[Callable[[str, str, Any], tuple[int, Any]]]

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        auth = self.headers.get("Authorization", "")
        user = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth.startswith("Basic ") else None
        type(self).received.append({"method": self.command, "path": self.path, "auth": user, "body": body})
        status, reply = type(self).answer(self.command, self.path, body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = _handle


def _tricky(name: str) -> str:
    """A test value for secret ``name`` with what a naive script would mangle: quotes, backslash,
    spaces, $ and %."""
    return f"{name.lower()} \"q\" \\ $HOME %s 'x'"


def _run_setup(
    script: str,
    service_env: dict[str, Any],
    answer: Callable[..., tuple[int, Any]],
    tmp_path: Path,
    url_var: str,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], dict[str, str]]:
    """Run docker/setup/SCRIPT with the service's environment (secrets filled in) against a stub."""
    handler = type("Handler", (_Stub,), {"received": [], "answer": staticmethod(answer)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # a curl on PATH that records its arguments, then runs the real one
    real_curl = shutil.which("curl")
    assert real_curl, "curl is needed to run the setup jobs"
    argv_log = tmp_path / "curl-argv.log"
    wrapper = tmp_path / "bin" / "curl"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{real_curl}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    values = {
        k: _tricky(var) if (var := _required(v)) else _with_defaults(str(v)) for k, v in service_env.items()
    }
    values[url_var] = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"PATH": f"{wrapper.parent}:{os.environ['PATH']}", "SETUP_WAIT_S": "5", **values}
    try:
        proc = subprocess.run(
            ["sh", str(SETUP / script)], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    argv = argv_log.read_text() if argv_log.exists() else ""
    for name, value in values.items():
        if SECRET_NAME.search(name):
            assert value not in argv, f"{name} reached curl's command line"
    return proc, handler.received, values


def _es_answer(method: str, path: str, body: Any) -> tuple[int, Any]:
    return 200, {"status": "yellow"} if path.startswith("/_cluster/health") else {"created": True}


def _role(name: str) -> dict[str, Any]:
    return json.loads((ROLES / f"{name}.json").read_text())


def test_elasticsearch_setup_creates_each_client_user_with_its_role(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    service_env = compose["services"]["elasticsearch-setup"]["environment"]
    proc, received, values = _run_setup(
        "elasticsearch.sh", service_env, _es_answer, tmp_path, "ELASTICSEARCH_URL"
    )
    assert proc.returncode == 0, proc.stderr
    assert {r["auth"] for r in received} == {f"elastic:{values['ELASTIC_PASSWORD']}"}
    writes = {(r["method"], r["path"]): r["body"] for r in received if r["method"] != "GET"}
    assert writes[("POST", "/_security/user/kibana_system/_password")] == {
        "password": values["KIBANA_SYSTEM_PASSWORD"]
    }
    roles = {path.rsplit("/", 1)[1]: body for (_, path), body in writes.items() if "/_security/role/" in path}
    assert roles == {f.stem: _role(f.stem) for f in ROLES.glob("*.json")}
    users = {
        path.rsplit("/", 1)[1]: body
        for (_, path), body in writes.items()
        if "/_security/user/" in path and "_password" not in path
    }
    accounts = _es_accounts(compose)
    expected_role = {
        "shipper": "price_alchemy_shipper",
        "logstash": "price_alchemy_logstash",
        "airflow-scheduler": "price_alchemy_drift_monitor",
        "kibana-setup": "price_alchemy_kibana_import",
    }
    assert set(users) == {accounts[name][0] for name in expected_role}
    for name, role in expected_role.items():
        user, password_var = accounts[name]
        assert users[user]["roles"] == [role], f"{name} ({user})"
        assert users[user]["password"] == _tricky(password_var), f"{name}: password mangled or another's"


def test_elasticsearch_roles_grant_only_what_each_client_does() -> None:
    def privileges(role: dict[str, Any]) -> dict[str, set[str]]:
        granted: dict[str, set[str]] = {}
        for entry in role.get("indices", []):
            for pattern in entry["names"]:
                granted.setdefault(pattern, set()).update(entry["privileges"])
        return granted

    requests, monitoring = names.REQUESTS_INDEX_PATTERN, names.MONITORING_INDEX_PATTERN
    deadletter = re.search(r'index => "(price-alchemy-deadletter)-', PIPELINE.read_text())
    assert deadletter
    append = {"create_doc", "create_index"}  # create only: no overwrite, no delete, no read
    shipper, logstash = _role("price_alchemy_shipper"), _role("price_alchemy_logstash")
    drift, kibana_import = _role("price_alchemy_drift_monitor"), _role("price_alchemy_kibana_import")
    assert set(shipper["cluster"]) == {"manage_index_templates"} and privileges(shipper) == {requests: append}
    assert set(logstash["cluster"]) == {"monitor"}
    assert privileges(logstash) == {requests: append, f"{deadletter.group(1)}*": append}
    assert not drift["cluster"]
    assert privileges(drift) == {requests: {"read"}, monitoring: {"index", "create_index"}}
    assert not kibana_import["cluster"] and not privileges(kibana_import)
    (app,) = kibana_import["applications"]
    assert app["application"] == "kibana-.kibana" and app["resources"] == ["space:default"]
    assert all(p.startswith("feature_") and p.endswith(".all") for p in app["privileges"]), "no base `all`"
    for role in ROLES.glob("*.json"):
        body = _role(role.stem)
        assert not {"all", "manage", "manage_security"} & set(body["cluster"]), role.name
        assert not body.get("run_as"), role.name
        for pattern, granted in privileges(body).items():
            assert pattern.startswith("price-alchemy-"), f"{role.name}: {pattern}"
            assert not {"all", "manage", "write", "delete", "delete_index"} & granted, (
                f"{role.name}: {granted}"
            )


def test_elasticsearch_setup_stops_on_refused_credentials(compose: dict[str, Any], tmp_path: Path) -> None:
    service_env = compose["services"]["elasticsearch-setup"]["environment"]
    proc, received, _ = _run_setup(
        "elasticsearch.sh", service_env, lambda *_: (401, {}), tmp_path, "ELASTICSEARCH_URL"
    )
    assert proc.returncode != 0 and "refused the credentials (HTTP 401)" in proc.stderr
    assert [r["method"] for r in received] == ["GET"], "nothing is written after a refused login"


class _MlflowState:
    """Just enough of MLflow's auth REST API for docker/setup/mlflow.sh, with its error shapes."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.admin: dict[str, bool] = {}
        self.models: set[str] = set()
        self.grants: dict[tuple[str, str, str], str] = {}

    def __call__(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        exists = (400, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"})
        route = (method, path.split("?", 1)[0])
        if route == ("GET", "/health"):
            return 200, "OK"
        if route == ("GET", "/api/2.0/mlflow/users/current"):
            return 200, {"user": {"id": 1, "username": "admin", "is_admin": True}}
        if route == ("POST", "/api/2.0/mlflow/users/create"):
            if body["username"] in self.users:
                return exists
            self.users[body["username"]] = body["password"]
            return 200, {"user": {"username": body["username"]}}
        if route == ("PATCH", "/api/2.0/mlflow/users/update-password"):
            self.users[body["username"]] = body["password"]
            return 200, {}
        if route == ("PATCH", "/api/2.0/mlflow/users/update-admin"):
            self.admin[body["username"]] = body["is_admin"]
            return 200, {}
        if route == ("POST", "/api/2.0/mlflow/registered-models/create"):
            if body["name"] in self.models:
                return exists
            self.models.add(body["name"])
            return 200, {"registered_model": {"name": body["name"]}}
        key = (body or {}).get("username"), (body or {}).get("resource_type"), (body or {}).get("resource_id")
        if route == ("POST", "/api/3.0/mlflow/users/permissions/grant"):
            if key in self.grants:
                return exists
            self.grants[key] = body["permission"]
            return 200, {}
        if route == ("POST", "/api/3.0/mlflow/users/permissions/revoke"):
            self.grants.pop(key)
            return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"}


def test_mlflow_setup_creates_the_client_users_and_grants_writes_to_airflow_only(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    service_env = compose["services"]["mlflow-setup"]["environment"]
    state = _MlflowState()
    state.grants[(service_env["MLFLOW_AIRFLOW_USERNAME"], "experiment", "*")] = "READ"  # a stale level
    for attempt in ("first start", "every later start"):
        proc, received, values = _run_setup("mlflow.sh", service_env, state, tmp_path, "MLFLOW_URL")
        assert proc.returncode == 0, f"{attempt}: {proc.stderr}"
        admin = f"{values['MLFLOW_ADMIN_USERNAME']}:{values['MLFLOW_ADMIN_PASSWORD']}"
        assert {r["auth"] for r in received} == {admin}, attempt
        airflow, api = values["MLFLOW_AIRFLOW_USERNAME"], values["MLFLOW_API_USERNAME"]
        assert state.users == {
            airflow: _tricky("MLFLOW_AIRFLOW_PASSWORD"),
            api: _tricky("MLFLOW_API_PASSWORD"),
        }
        assert state.admin == {airflow: False, api: False}
        model = values["PRICE_ALCHEMY_MODEL_NAME"]
        assert state.models == {model} and model == Settings.model_fields["model_name"].default
        assert state.grants == {
            (airflow, "experiment", "*"): "EDIT",
            (airflow, "registered_model", model): "EDIT",
        }, "the API gets no grant: it reads through default_permission"


def test_mlflow_setup_explains_a_changed_admin_password(compose: dict[str, Any], tmp_path: Path) -> None:
    service_env = compose["services"]["mlflow-setup"]["environment"]

    def refuse(method: str, path: str, body: Any) -> tuple[int, Any]:
        return (200, "OK") if path == "/health" else (401, "You are not authenticated.")

    proc, received, _ = _run_setup("mlflow.sh", service_env, refuse, tmp_path, "MLFLOW_URL")
    assert proc.returncode != 0 and "only on its first start" in proc.stderr
    assert all(r["method"] == "GET" for r in received)


# --- the same topology as local processes (scripts/stack.sh): one source of settings -----------


def _stack_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """scripts/stack/settings.py, loaded as stack.sh runs it (state under ``tmp_path``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "stack_settings", ROOT / "scripts" / "stack" / "settings.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    referenced = {m.group(1) for m in REFERENCE.finditer((DOCKER / "docker-compose.yml").read_text())}
    for name in list(os.environ):  # the compose defaults, not this shell's values
        if name.startswith(("STACK_", "AIRFLOW", "MLFLOW_", "PRICE_ALCHEMY_")) or name in referenced:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STACK_DIR", str(tmp_path / "stack"))
    for var, port in (
        ("STACK_POSTGRES_PORT", 15432),
        ("STACK_MLFLOW_PORT", 15000),
        ("STACK_AIRFLOW_PORT", 18080),
    ):
        monkeypatch.setenv(var, str(port))
    module.write_secrets(tmp_path / "stack" / "secrets.env")
    return module


#: Compose services the local stack does not run as processes, and why.
NOT_LOCAL = {
    "elasticsearch": "scripts/elasticsearch.py runs the node (Maven Central's distribution)",
    "elasticsearch-setup": "the local node has no security module: no users or roles to create",
    "logstash": "no registry reachable here serves it: the shipper writes to Elasticsearch",
    "kibana": "no registry reachable here serves it",
    "kibana-setup": "no Kibana to import into (scripts/kibana_import.sh, for a real one)",
}


def test_the_local_stack_reads_every_setting_from_the_compose_file(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _stack_settings(monkeypatch, tmp_path)
    secrets = settings.read_secrets(tmp_path / "stack" / "secrets.env")
    hosts = {"postgres", "mlflow", "airflow-apiserver", "elasticsearch", "logstash"}
    for service in settings.LOCAL_SERVICES:
        raw = {k: str(v) for k, v in (compose["services"][service].get("environment") or {}).items()}
        local = settings.environment(service)
        dropped = {k for k, v in settings.LOCAL_ENV.get(service, {}).items() if v is None}
        own = set(settings.image_env(service))
        # the same names: the compose ones, minus what cannot exist here, plus the image's own
        assert set(local) == (set(raw) - dropped) | own, service
        assert not own & set(raw), f"{service}: the image settings would shadow compose's"
        for name, value in raw.items():
            if name in dropped or name in settings.LOCAL_ENV.get(service, {}):
                continue
            expected = REFERENCE.sub(
                lambda m: secrets[m.group(1)] if m.group(2) == ":?" else (m.group(3) or ""), value
            )
            if not any(host in expected for host in hosts) and not expected.startswith("/"):
                assert local[name] == expected, f"{service}: {name} differs from the compose file"
            else:  # a compose host name or a container path: rewritten to this machine
                assert not any(f"//{h}" in local[name] or f"@{h}/" in local[name] for h in hosts), local[name]
    # every compose service runs here, or is named with what stands in for it
    assert set(compose["services"]) == set(settings.LOCAL_SERVICES) | set(NOT_LOCAL), (
        "a compose service the local stack neither runs nor names in NOT_LOCAL"
    )
    # the API's command is compose's, flags included (a flag added there reaches the local API),
    # with only the bind address and the port made local
    api = compose["services"]["api"]
    flagged = {
        **compose,
        "services": {**compose["services"], "api": {**api, "command": [*api["command"], "--flag", "x"]}},
    }
    monkeypatch.setattr(settings, "load", lambda: flagged)
    local = {"--host": "127.0.0.1", "--port": str(settings.ports()["api"])}
    expected = [
        local.get(prev, arg) for prev, arg in zip(["", *api["command"]], api["command"], strict=False)
    ]
    assert settings.command("api") == ["price-alchemy", *expected, "--flag", "x"]
    # the accounts are the compose file's x-accounts, not copies
    accounts = compose["x-accounts"]
    assert settings.environment("airflow-scheduler")["MLFLOW_TRACKING_USERNAME"] == accounts["mlflow-airflow"]
    assert settings.environment("api")["MLFLOW_TRACKING_USERNAME"] == accounts["mlflow-api"]
    script = (ROOT / "scripts" / "stack.sh").read_text() + (
        ROOT / "scripts" / "stack" / "settings.py"
    ).read_text()
    for name in accounts.values():
        assert name not in script, (
            f"{name} is written out in the stack scripts: read it from the compose file"
        )
    # the same one-shot jobs as the compose stack, run against the local processes
    assert "docker/postgres/init-mlflow-db.sh" in script
    assert settings.command("mlflow-setup")[-1] == str(SETUP / "mlflow.sh")


def test_the_local_stack_listens_on_loopback_only_and_logs_in_everywhere(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _stack_settings(monkeypatch, tmp_path)
    mlflow = settings.command("mlflow")
    assert _flag(mlflow, "--host") == "127.0.0.1" and _flag(mlflow, "--port") == "15000"
    assert _flag(mlflow, "--app-name") == "basic-auth"
    assert _flag(mlflow, "--backend-store-uri") == "postgresql+psycopg2://mlflow@127.0.0.1:15432/mlflow"
    assert _flag(mlflow, "--allowed-hosts") == "127.0.0.1:15000,localhost:15000"
    assert "--serve-artifacts" in mlflow
    api_server = settings.command("airflow-apiserver")
    assert _flag(api_server, "--host") == "127.0.0.1" and _flag(api_server, "--port") == "18080"
    for service in ("airflow-scheduler", "airflow-triggerer"):  # no log server on every interface
        assert "--skip-serve-logs" in settings.command(service)
    serve = settings.command("api")
    assert serve[:2] == ["price-alchemy", "serve"] and _flag(serve, "--host") == "127.0.0.1"
    env = settings.environment("api")
    assert env["PRICE_ALCHEMY_API_KEY"] and env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert (
        "@127.0.0.1:15432/airflow"
        in settings.environment("airflow-scheduler")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert settings.environment("airflow-apiserver")["AIRFLOW__API__HOST"] == "127.0.0.1"
    ini = settings.auth_ini()
    assert "database_uri = postgresql+psycopg2://mlflow@127.0.0.1:15432/mlflow" in ini
    assert not _literal_secrets(ini)


def test_the_local_stack_generates_its_secrets_once_into_a_private_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _stack_settings(monkeypatch, tmp_path)
    path = tmp_path / "stack" / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = settings.read_secrets(path)
    # every secret the local services reference, under docker/.env's names, plus the Airflow admin's
    assert set(first) == set(settings.secret_names())
    assert set(first) - set(settings.EXTRA_SECRETS) <= set(_example_env())
    assert {
        "AIRFLOW_DB_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_API_PASSWORD",
        "PRICE_ALCHEMY_API_KEY",
    } <= set(first)
    assert all(len(value) >= 12 for value in first.values()), "MLflow refuses passwords under 12 characters"
    assert len(set(first.values())) == len(first), "a secret is reused"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith("MLFLOW_API_PASSWORD=")) + "\n")
    settings.write_secrets(path)
    again = settings.read_secrets(path)
    assert {k: v for k, v in again.items() if k != "MLFLOW_API_PASSWORD"} == {
        k: v for k, v in first.items() if k != "MLFLOW_API_PASSWORD"
    }, "existing secrets must be kept"
    assert again["MLFLOW_API_PASSWORD"] and again["MLFLOW_API_PASSWORD"] != first["MLFLOW_API_PASSWORD"]
    path.chmod(0o644)  # complete but readable by others (restored from a backup, say): closed again
    settings.write_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.read_secrets(path) == again
    link = path.with_name("link.env")
    link.symlink_to(path)
    with pytest.raises(SystemExit, match="is a symlink"):
        settings.write_secrets(link)
    # Lost once the database exists: new values would lock the services out of their data.
    (path.parent / "postgres" / "data").mkdir(parents=True)
    (path.parent / "postgres" / "data" / "PG_VERSION").write_text("17\n")
    path.write_text("\n".join(line for line in lines if not line.startswith("AIRFLOW_DB_PASSWORD=")) + "\n")
    with pytest.raises(SystemExit, match="lacks AIRFLOW_DB_PASSWORD, but the stack's data"):
        settings.write_secrets(path)
    assert "AIRFLOW_DB_PASSWORD" not in settings.read_secrets(path), "nothing written"
    path.unlink()
    with pytest.raises(SystemExit, match="restore the file"):
        settings.write_secrets(path)
    assert not path.exists()
    with pytest.raises(SystemExit, match="the secret PRICE_ALCHEMY_API_KEY is missing"):
        settings.environment("api")


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]


def test_down_signals_only_the_processes_the_stack_started(tmp_path: Path) -> None:
    """A pid file whose pid now belongs to another process (the kernel reused it) is not obeyed."""
    home = tmp_path / "home"
    run = home / "stack" / "run"
    run.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICE_ALCHEMY_", "STACK_"))}
    env["PRICE_ALCHEMY_HOME"] = str(home)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        start = int(_start_time(stranger.pid))
        (run / "api.pid").write_text(f"{stranger.pid} {start + 1}\n")  # same pid, another process
        down = subprocess.run(
            ["bash", str(ROOT / "scripts" / "stack.sh"), "down"], env=env, capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr
        assert stranger.poll() is None, "down signalled a process the stack did not start"
        assert not (run / "api.pid").exists() and "stopped api" not in down.stderr

        (run / "api.pid").write_text(f"{stranger.pid} {start}\n")  # the process `up` started
        down = subprocess.run(
            ["bash", str(ROOT / "scripts" / "stack.sh"), "down"], env=env, capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr
        assert stranger.wait(timeout=30) == -15 and "stopped api" in down.stderr
    finally:
        stranger.kill()
        stranger.wait()
