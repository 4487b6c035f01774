"""The resolved settings as text, for people (``price-alchemy config``) and for shell scripts.

The scripts in ``scripts/`` used to re-derive the home, the API port and the tracking URI with
their own defaults, and drifted from :class:`~price_alchemy.config.Settings` (a ``.env`` file was
seen by the CLI but not by them). They now ``eval "$(price-alchemy config --shell)"`` and read the
names below. Pure: Settings in, strings out; no secret ever leaves this module in clear.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Final, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, SecretStr

from price_alchemy.config import Settings

SECRET_SET: Final = "(set)"
"""What a secret that is set shows instead of its value."""
AIRFLOW_DIR: Final = "airflow"
"""``scripts/airflow.sh`` keeps Airflow's state (``AIRFLOW_HOME``) here under the home by default."""
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class SettingRow:
    """One line of ``price-alchemy config``."""

    name: str  # the field (or derived value) name, as ``--get`` takes it
    variable: str | None  # the environment variable that sets it; None for a derived value
    value: str | None  # None: unset; a set secret is SECRET_SET
    secret: bool = False


def mask_url_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced, if it has one."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def api_url(settings: Settings) -> str:
    """Where a local client reaches the API: a wildcard listen address means this machine."""
    host = "127.0.0.1" if settings.serve_host in WILDCARD_HOSTS else settings.serve_host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{settings.serve_port}"


def _variable(settings: Settings, name: str) -> str:
    alias = type(settings).model_fields[name].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def _is_secret(settings: Settings, name: str) -> bool:
    annotation = type(settings).model_fields[name].annotation
    return SecretStr in (get_args(annotation) or (annotation,))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return SECRET_SET
    return str(value)


def settings_rows(settings: Settings) -> list[SettingRow]:
    """Every setting, then the paths and URIs derived from them; secrets masked, URL passwords too."""
    rows = []
    for name in type(settings).model_fields:
        value = _text(getattr(settings, name))
        if value is not None and "://" in value:
            value = mask_url_password(value)
        rows.append(SettingRow(name, _variable(settings, name), value, secret=_is_secret(settings, name)))
    derived = {
        "tracking_uri": mask_url_password(settings.tracking_uri),
        "artifact_location": settings.artifact_location,
        "duckdb_path": str(settings.duckdb_path),
        "reports_dir": str(settings.reports_dir),
        "request_log_dir": str(settings.request_log_dir),
        "model_cache_dir": str(settings.model_cache_dir),
        "airflow_home": str(settings.home / AIRFLOW_DIR),
        "api_url": api_url(settings),
    }
    rows.extend(SettingRow(name, None, value) for name, value in derived.items())
    return rows


def shell_exports(settings: Settings) -> dict[str, str]:
    """What the scripts need, by the variable name they read.

    Derived values get names no setting reads back (``PRICE_ALCHEMY_TRACKING_URI``, not
    ``MLFLOW_TRACKING_URI``, which would make the embedded store look like an explicit server to
    every later process). ``PRICE_ALCHEMY_AIRFLOW_HOME`` is the default ``airflow.sh`` gives
    ``AIRFLOW_HOME``, which it leaves alone when the caller set it. An Elasticsearch URL carrying a
    password is left out: the processes the scripts start read it from the environment or ``.env``.
    """
    exports = {
        "PRICE_ALCHEMY_HOME": str(settings.home),
        "PRICE_ALCHEMY_SERVE_HOST": settings.serve_host,
        "PRICE_ALCHEMY_SERVE_PORT": str(settings.serve_port),
        "PRICE_ALCHEMY_API_URL": api_url(settings),
        "PRICE_ALCHEMY_TRACKING_URI": mask_url_password(settings.tracking_uri),
        "PRICE_ALCHEMY_REPORTS_DIR": str(settings.reports_dir),
        "PRICE_ALCHEMY_REQUEST_LOG_DIR": str(settings.request_log_dir),
        "PRICE_ALCHEMY_AIRFLOW_HOME": str(settings.home / AIRFLOW_DIR),
    }
    url = settings.elasticsearch_url
    if url and mask_url_password(url) == url:
        exports["PRICE_ALCHEMY_ELASTICSEARCH_URL"] = url
    return exports


def shell_script(exports: dict[str, str]) -> str:
    """``export NAME=value`` lines, each value quoted for a POSIX shell."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())


def lookup(rows: list[SettingRow], name: str) -> SettingRow | None:
    """The row ``--get`` means by ``name``: a field or derived name, or a variable, in any case."""
    wanted = name.strip().lower().replace("-", "_")
    for row in rows:
        if wanted in (row.name, (row.variable or "").lower()):
            return row
    return None
