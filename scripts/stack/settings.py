#!/usr/bin/env python3
"""The compose stack's settings, rewritten for the same topology as local processes (stack.sh).

``docker/docker-compose.yml`` is the one source of every non-secret setting of the stack: the
account names (``x-accounts``), each service's environment variables and their defaults, the
Postgres roles and databases, the MLflow server's flags, the commands. ``scripts/stack.sh`` starts
each process with the environment and command that this module derives from the compose service of
the same name, so the two cannot drift apart (``tests/unit/test_docker_stack.py`` checks it). What
differs locally is in one table each below, and nothing else:

- ``HOSTS``: a service's name on the compose network becomes 127.0.0.1 and a port of this machine;
- ``PATHS``: a container volume becomes a folder under the stack's state directory;
- ``LOCAL_ENV``: settings that cannot be the compose ones here (no Logstash is served to this
  machine: the shipper writes straight to Elasticsearch; the local Elasticsearch node is a
  distribution without the security module, so its clients have no account there);
- ``LOCAL_FLAGS``: command-line flags for loopback binding and two cores.

Secrets (every ``${VAR:?...}`` of the compose file) come from the stack's secrets file
(``secrets.env``, mode 0600, generated at the first ``up``), never from the repository.

    settings.py env SERVICE       shell exports for SERVICE's process (for eval)
    settings.py command SERVICE   its argv, one argument per line
    settings.py secrets FILE      create FILE (0600) or add the secrets it lacks; prints nothing
    settings.py auth-ini FILE     MLflow's basic_auth.ini with the local database URI
    settings.py pins              the Flask-WTF/WTForms pins of the mlflow image (the auth extra)

Environment: ``STACK_DIR`` (state directory), ``STACK_POSTGRES_PORT``, ``STACK_MLFLOW_PORT``,
``STACK_AIRFLOW_PORT``, ``STACK_ELASTICSEARCH_PORT``, ``PRICE_ALCHEMY_SERVE_PORT``; every
``${VAR:-default}`` of the compose file is taken from the environment when set there.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
AUTH_INI = REPO / "docker" / "mlflow" / "basic_auth.ini"
#: A compose reference ${VAR}, ${VAR:-default}, ${VAR:?message} (not an escaped $${VAR}).
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
#: The compose services that run here as processes (the others: Logstash and Kibana, not served to
#: this machine; the setup jobs run as scripts against the local processes).
LOCAL_SERVICES = (
    "postgres",
    "mlflow",
    "mlflow-setup",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "api",
    "shipper",
)
#: Secrets of the local stack that the compose file does not have (the simple auth manager
#: generates the Airflow UI passwords into a file in the container instead).
EXTRA_SECRETS = ("AIRFLOW_ADMIN_PASSWORD",)
#: Default host ports: the compose file's published ports for what it publishes, else the usual.
DEFAULT_PORTS = {"postgres": 5432, "elasticsearch": 9200}

# Settings the local processes cannot share with the containers, by service: None drops one.
LOCAL_ENV: dict[str, dict[str, str | None]] = {
    # no Logstash here: straight to the local node, which has no users to log in as
    "shipper": {
        "PRICE_ALCHEMY_SHIP_TO": "elasticsearch",
        "PRICE_ALCHEMY_LOGSTASH_URL": None,
        "PRICE_ALCHEMY_ELASTICSEARCH_USERNAME": None,
        "PRICE_ALCHEMY_ELASTICSEARCH_PASSWORD": None,
    },
    "airflow-scheduler": {
        "PRICE_ALCHEMY_ELASTICSEARCH_USERNAME": None,
        "PRICE_ALCHEMY_ELASTICSEARCH_PASSWORD": None,
    },
}


def ports() -> dict[str, int]:
    compose = load()

    def published(service: str) -> int:
        (port,) = compose["services"][service]["ports"]
        return int(str(port).rsplit(":", 1)[1])

    def port(var: str, default: int) -> int:
        value = os.environ.get(var) or str(default)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SystemExit(f"settings.py: {var}={value!r} is not a TCP port")
        return int(value)

    return {
        "postgres": port("STACK_POSTGRES_PORT", DEFAULT_PORTS["postgres"]),
        "mlflow": port("STACK_MLFLOW_PORT", published("mlflow")),
        "airflow-apiserver": port("STACK_AIRFLOW_PORT", published("airflow-apiserver")),
        "elasticsearch": port("STACK_ELASTICSEARCH_PORT", DEFAULT_PORTS["elasticsearch"]),
        "api": port("PRICE_ALCHEMY_SERVE_PORT", published("api")),
    }


def stack_dir() -> Path:
    value = os.environ.get("STACK_DIR")
    if not value:
        raise SystemExit("settings.py: STACK_DIR is not set (scripts/stack.sh sets it)")
    return Path(value).resolve()


def paths() -> dict[str, Path]:
    """Container volume mount points -> folders under the stack directory, by service."""
    state = stack_dir()
    return {
        "airflow": state / "airflow" / "price-alchemy-home",
        "api": state / "api" / "price-alchemy-home",
        "mlflow-artifacts": state / "mlflow" / "artifacts",
    }


def load() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def read_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value
    return values


def secret_names() -> list[str]:
    """Every ``${VAR:?}`` the local services reference, plus the stack's own."""
    compose = load()
    found: list[str] = []
    for name in LOCAL_SERVICES:
        for var, op, _ in REFERENCE.findall(yaml.safe_dump(compose["services"][name])):
            if op == ":?" and var not in found:
                found.append(var)
    return found + [n for n in EXTRA_SECRETS if n not in found]


def write_secrets(path: Path) -> None:
    """Add a random value for every secret ``path`` lacks (created 0600; existing values kept)."""
    if path.is_symlink():
        raise SystemExit(f"stack: {path} is a symlink; the secrets file must be a regular file")
    if path.exists():
        os.chmod(path, 0o600)  # a copy restored 0644 is closed again, not left readable
    current = read_secrets(path)
    missing = [name for name in secret_names() if not current.get(name)]
    if not missing and path.exists():
        return
    database = path.parent / "postgres" / "data"
    if missing and (database / "PG_VERSION").exists():
        # Postgres, the MLflow admin and the services' users were created with the old values: new
        # ones would lock every service out of its own data.
        raise SystemExit(
            f"stack: {path} lacks {', '.join(missing)}, but the stack's data in {database} was "
            "created with the old values; restore the file (or add those lines), or start over with "
            f"`scripts/stack.sh down && rm -rf {path.parent}`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as out:
        if not current:
            out.write("# Generated by scripts/stack.sh at the first `up`; the names are docker/.env's.\n")
        for name in missing:
            # URL-safe (it goes into a database URI) and over MLflow's 12-character minimum
            out.write(f"{name}={secrets.token_urlsafe(24)}\n")


def _resolve(text: str, secret_values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        var, op, default = match.group(1), match.group(2), match.group(3)
        if op == ":?":
            if not secret_values.get(var):
                raise SystemExit(f"settings.py: the secret {var} is missing from the secrets file")
            return secret_values[var]
        return os.environ.get(var) or (default if op == ":-" else "")

    return REFERENCE.sub(value, text)


def _localize(text: str, service: str) -> str:
    """Compose network names and container paths -> this machine's ports and folders."""
    port, where = ports(), paths()
    home = where["api"] if service in ("api", "shipper") else where["airflow"]
    rules = [
        (r"@postgres/", f"@127.0.0.1:{port['postgres']}/"),
        (r"\bmlflow:5000\b", f"127.0.0.1:{port['mlflow']}"),
        (r"\blocalhost:5000\b", f"localhost:{port['mlflow']}"),
        (r"\b127\.0\.0\.1:5000\b", f"127.0.0.1:{port['mlflow']}"),
        (r"\bairflow-apiserver:8080\b", f"127.0.0.1:{port['airflow-apiserver']}"),
        (r"\belasticsearch:9200\b", f"127.0.0.1:{port['elasticsearch']}"),
        (r"(^|=)/var/lib/price-alchemy$", rf"\g<1>{home}"),
        (r"(^|=)/var/lib/mlflow/artifacts$", rf"\g<1>{where['mlflow-artifacts']}"),
        (r"^/etc/mlflow/basic_auth\.ini$", str(stack_dir() / "mlflow" / "basic_auth.ini")),
        (r"^--host=0\.0\.0\.0$", "--host=127.0.0.1"),
        (r"^--port=5000$", f"--port={port['mlflow']}"),
    ]
    for pattern, replacement in rules:
        text = re.sub(pattern, replacement, text)
    if text.startswith("--allowed-hosts="):  # two compose names became the same local one
        hosts = text.split("=", 1)[1].split(",")
        text = "--allowed-hosts=" + ",".join(dict.fromkeys(hosts))
    return text


def image_env(service: str) -> dict[str, str]:
    """What the Airflow image sets (its AIRFLOW_HOME, the DAGs it copies) and two-core sizing."""
    if not service.startswith("airflow-"):
        return {}
    return {
        "AIRFLOW_HOME": str(stack_dir() / "airflow" / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        # as scripts/airflow.sh: two task slots, one API worker, one DAG parser
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "2"),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": os.environ.get(
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "2"
        ),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports()["airflow-apiserver"]),
        # the admin's password is the stack's generated one (secrets.env), not one printed in a log
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            stack_dir() / "airflow" / "simple_auth_manager_passwords.json"
        ),
    }


def environment(service: str) -> dict[str, str]:
    """The compose environment of ``service``, resolved and made local."""
    if service not in LOCAL_SERVICES:
        raise SystemExit(f"settings.py: {service!r} is not a service of the local stack {LOCAL_SERVICES}")
    secret_values = read_secrets(stack_dir() / "secrets.env")
    raw = load()["services"][service].get("environment") or {}
    env = image_env(service)
    env.update({name: _localize(_resolve(str(value), secret_values), service) for name, value in raw.items()})
    for name, value in LOCAL_ENV.get(service, {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _extra_flags(service: str) -> list[str]:
    """Local flags: loopback binding, the ports of this machine, worker counts for two cores."""
    port = ports()
    workers = os.environ.get("STACK_MLFLOW_WORKERS", "2")
    return {
        "mlflow": [f"--workers={workers}"],
        "airflow-apiserver": ["--host", "127.0.0.1", "--port", str(port["airflow-apiserver"])],
        # the api-server reads task logs from the shared log folder: no log server on every interface
        "airflow-scheduler": ["--skip-serve-logs"],
        "airflow-triggerer": ["--skip-serve-logs"],
    }.get(service, [])


def command(service: str) -> list[str]:
    """The argv of the local process (the compose command with its entrypoint, made local)."""
    spec = load()["services"][service]
    raw = spec.get("command", [])
    args = shlex.split(raw) if isinstance(raw, str) else [str(a) for a in raw]
    secret_values = read_secrets(stack_dir() / "secrets.env")
    args = [_localize(_resolve(a, secret_values), service) for a in args]
    if service.startswith("airflow-") and service != "airflow-init":
        program = ["airflow"]
    elif service == "airflow-init":
        program, args = ["airflow"], shlex.split(args[-1])[1:]  # bash -c "airflow db migrate"
    elif service == "mlflow":
        program = ["mlflow"]
    elif service in ("api", "shipper"):
        program = ["price-alchemy"]
        if service == "api":  # compose's own flags, with --host on loopback and --port this machine's
            local = {"--host": "127.0.0.1", "--port": str(ports()["api"])}
            args = [local.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    elif service == "mlflow-setup":
        program, args = ["sh"], [str(REPO / "docker" / "setup" / Path(args[-1]).name)]
    else:
        raise SystemExit(f"settings.py: no command for {service!r}")
    return program + args + _extra_flags(service)


def auth_ini() -> str:
    """docker/mlflow/basic_auth.ini with its database URI on the local Postgres."""
    lines = []
    for line in AUTH_INI.read_text().splitlines():
        if line.startswith("database_uri"):
            line = _localize(line, "mlflow")
        lines.append(line)
    return "\n".join(lines) + "\n"


def pins() -> list[str]:
    """The mlflow image's Flask-WTF and WTForms pins (MLflow's auth extra), from docker/Dockerfile."""
    stage = DOCKERFILE.read_text().split("AS mlflow", 1)[1].split("\nFROM ", 1)[0]
    found = re.findall(r"\b((?:Flask-WTF|WTForms)==[\w.]+)", stage)
    if len(found) != 2:
        raise SystemExit(f"settings.py: cannot find the Flask-WTF and WTForms pins in {DOCKERFILE}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 and not (argv and argv[0] == "pins"):
        print(__doc__, file=sys.stderr)
        return 2
    what = argv[0]
    if what == "env":
        for name, value in environment(argv[1]).items():
            print(f"export {name}={shlex.quote(value)}")
    elif what == "command":
        print("\n".join(command(argv[1])))
    elif what == "secrets":
        write_secrets(Path(argv[1]))
    elif what == "auth-ini":
        target = Path(argv[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(auth_ini())
    elif what == "pins":
        print("\n".join(pins()))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
