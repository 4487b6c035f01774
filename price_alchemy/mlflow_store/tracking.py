"""Tracking: where MLflow lives, experiments, runs and their artifacts (the one ``MlflowClient`` builder)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from price_alchemy.errors import ModelNotFoundError
from price_alchemy.names import PROFILE_ARTIFACT

if TYPE_CHECKING:
    from price_alchemy.config import Settings

log = logging.getLogger(__name__)


def _client_defaults() -> None:
    """Process-wide MLflow client defaults: no download progress bars in logs."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def serving_defaults() -> None:
    """Client defaults for a long-running server: fail fast when MLflow is unreachable."""
    _client_defaults()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def client(settings: Settings) -> MlflowClient:
    """A client for the configured tracking store and registry (the only place one is built)."""
    _client_defaults()
    uri = settings.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=settings.mlflow_registry_uri or uri)


def configure(settings: Settings) -> str:
    """Point the fluent API at the configured (or embedded SQLite) store; return the experiment id."""
    settings.ensure_home()
    _client_defaults()
    mlflow.set_tracking_uri(settings.tracking_uri)
    if settings.mlflow_tracking_uri is None:
        # set_tracking_uri exports MLFLOW_TRACKING_URI, which Settings would read back as an explicit
        # server: a later Settings with another home would silently share this store.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if settings.mlflow_registry_uri:
        mlflow.set_registry_uri(settings.mlflow_registry_uri)
    experiment_id = ensure_experiment(settings, settings.experiment_name)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created (with an artifact root in the home) when missing."""
    mlflow_client = client(settings)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    base = settings.artifact_location
    location = None
    if base is not None:
        location = base if name == settings.experiment_name else f"{base.rstrip('/')}/{name}"
    experiment_id = mlflow_client.create_experiment(name, artifact_location=location)
    log.info("created MLflow experiment %s (%s)", name, experiment_id)
    return str(experiment_id)


# --- runs ------------------------------------------------------------------------------------
@contextmanager
def run(
    *,
    run_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    experiment_id: str | None = None,
) -> Iterator[str]:
    """Open (or resume, with ``run_id``) a run of the configured experiment; yields its id.

    Inside, :mod:`mlflow`'s fluent logging calls go to this run; the helpers below are the ones the
    package uses.
    """
    with mlflow.start_run(
        run_id=run_id, run_name=run_name, nested=nested, experiment_id=experiment_id
    ) as active:
        yield str(active.info.run_id)


def active_run_id() -> str | None:
    active = mlflow.active_run()
    return None if active is None else str(active.info.run_id)


log_params = mlflow.log_params
log_param = mlflow.log_param
log_metrics = mlflow.log_metrics
log_metric = mlflow.log_metric
set_tags = mlflow.set_tags
set_tag = mlflow.set_tag
log_dict = mlflow.log_dict
log_text = mlflow.log_text


def log_folder(folder: Path, artifact_path: str) -> None:
    """Every file of ``folder`` as artifacts of the active run, under ``artifact_path``."""
    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def log_file(path: Path, artifact_path: str) -> None:
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def load_run_dict(settings: Settings, run_id: str, artifact: str) -> dict[str, Any]:
    """A JSON artifact of a run (the search outcome, the training profile), read without side files."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact,
            dst_path=tmp,
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.mlflow_registry_uri or settings.tracking_uri,
        )
        loaded: dict[str, Any] = json.loads(Path(path).read_text())
    return loaded


def run_profile(settings: Settings, run_id: str) -> dict[str, Any]:
    """The training profile a run logged; :class:`ModelNotFoundError` when it has none."""
    try:
        return load_run_dict(settings, run_id, PROFILE_ARTIFACT)
    except (MlflowException, OSError, ValueError) as exc:
        raise ModelNotFoundError(f"run {run_id} has no {PROFILE_ARTIFACT}") from exc


def download(settings: Settings, uri: str, destination: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(destination), tracking_uri=settings.tracking_uri
        )
    )
