"""Infrastructure settings, read from the environment (prefix ``PRICE_ALCHEMY_``) and ``.env``.

Experiment parameters (search spaces, budgets, thresholds) live in the parameters file instead;
see :mod:`price_alchemy.params`. Build settings only in entry points, via :func:`get_settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from price_alchemy.names import CHAMPION


class Settings(BaseSettings):
    """Where state lives and which backends to talk to."""

    model_config = SettingsConfigDict(env_prefix="PRICE_ALCHEMY_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".price_alchemy"),
        description="Directory holding all embedded state: DuckDB warehouse, MLflow store, reports.",
    )
    warehouse: Literal["duckdb", "bigquery"] = Field(default="duckdb", description="Warehouse backend.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "PRICE_ALCHEMY_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server; default is a SQLite store inside home.",
    )
    mlflow_registry_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "PRICE_ALCHEMY_MLFLOW_REGISTRY_URI"),
        description="Model registry URI; default is the tracking URI.",
    )
    experiment_name: str = "price-alchemy"
    model_name: str = "price-alchemy"
    params_file: Path | None = Field(
        default=None, description="Parameters YAML; default is the one shipped with the package."
    )

    bigquery_project: str | None = None
    bigquery_dataset: str = "price_alchemy"
    bigquery_location: str | None = None
    bigquery_api_endpoint: str | None = Field(
        default=None, description="Override the BigQuery REST endpoint (e.g. a local emulator)."
    )
    bigquery_credentials_file: Path | None = Field(
        default=None, description="Service-account JSON; default uses Application Default Credentials."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- serving (price-alchemy serve) ---
    api_key: SecretStr | None = Field(
        default=None, description="When set, every /v1 request must send it in the X-API-Key header."
    )
    serve_host: str = Field(default="127.0.0.1", description="Interface the API listens on.")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    model_alias: str = Field(default=CHAMPION, description="Registry alias the API serves.")
    model_watch_interval_s: float = Field(
        default=10.0, gt=0, description="How often the API checks whether the alias moved to a new version."
    )
    max_batch_size: int = Field(
        default=1000, ge=1, le=10_000, description="Most listings in one batch request."
    )
    max_body_bytes: int = Field(default=4_000_000, ge=1024, description="Largest request body accepted.")
    predict_batch_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="How long the API waits to gather concurrent requests into one model call.",
    )
    request_log_enabled: bool = Field(default=True, description="Write one ECS event per prediction request.")
    request_log_segment_bytes: int = Field(
        default=16_000_000,
        ge=4096,
        description="Size at which the request-log buffer starts a new segment file.",
    )
    request_log_max_bytes: int = Field(
        default=2_000_000_000,
        ge=65_536,
        description="Most bytes of request events the buffer holds unshipped (all workers); when full, "
        "new events are dropped, counted in /metrics and logged, and requests are still answered.",
    )
    request_log_fsync: Literal["never", "interval", "always"] = Field(
        default="interval",
        description="When request events reach the disk: never (a crash of the process loses nothing, "
        "a power cut loses what the OS had not written), every request_log_fsync_interval_s, or always.",
    )
    request_log_fsync_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Most seconds of events a power cut can lose with fsync=interval.",
    )
    request_log_refused_per_minute: int = Field(
        default=60,
        ge=0,
        description="Most events per minute and worker for requests refused before authentication "
        "(401, 413, 400 Content-Length); the others are only counted in /metrics.",
    )
    serve_workers: int = Field(
        default=1, ge=1, le=64, description="API worker processes (uvicorn workers) sharing the home."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "PRICE_ALCHEMY_PROMETHEUS_MULTIPROC_DIR"),
        description="Where API workers share their metrics (set by `serve --workers N` for N > 1).",
    )

    # --- monitoring (request-log shipping, drift) ---
    elasticsearch_url: str | None = Field(
        default=None,
        description="Elasticsearch the shipper and drift monitor use (e.g. http://127.0.0.1:9200).",
    )
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_api_key: SecretStr | None = None
    ship_to: Literal["elasticsearch", "logstash"] = Field(
        default="elasticsearch", description="Where the shipper sends request events."
    )
    logstash_url: str | None = Field(
        default=None, description="Logstash HTTP input (e.g. http://logstash:8080) when ship_to=logstash."
    )

    @field_validator(
        "bigquery_project",
        "bigquery_location",
        "bigquery_api_endpoint",
        "bigquery_credentials_file",
        "elasticsearch_url",
        "logstash_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``VAR=`` (as docker compose passes an unset default) means "not set", not an empty value."""
        return None if value == "" else value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("bigquery_dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not value.replace("_", "").isalnum():
            raise ValueError("bigquery_dataset may contain only letters, digits and underscores")
        return value

    @property
    def duckdb_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def request_log_dir(self) -> Path:
        """Durable buffer of request events (segment files) that the shipper reads."""
        return self.home / "request-log"

    @property
    def model_cache_dir(self) -> Path:
        """Last good served model, so the API restarts without MLflow."""
        return self.home / "serving" / "model-cache"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI actually used: the configured one, else SQLite under home."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments in the embedded store (None: the server decides)."""
        if self.mlflow_tracking_uri:
            return None
        return (self.home / "mlartifacts").as_uri()

    def ensure_home(self) -> Path:
        """Create the home directory tree (entry points call this, never import time)."""
        for path in (self.home, self.reports_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self.home


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
