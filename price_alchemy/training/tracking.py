"""MLflow wiring: tracking URI and experiment from Settings (called from entry points only)."""

from __future__ import annotations

import logging
import os

import mlflow
from mlflow.tracking import MlflowClient

from price_alchemy.config import Settings

log = logging.getLogger(__name__)


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured (or embedded SQLite) store; return the experiment id."""
    settings.ensure_home()
    # MLflow refuses to deserialize any model unless this is set. Our models come from our own
    # registry (saved as skops with an explicit trusted-types list); a user may still set "false".
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(settings.tracking_uri)
    if settings.mlflow_tracking_uri is None:
        # set_tracking_uri exports MLFLOW_TRACKING_URI, which Settings would read back as an explicit
        # server: a later Settings with another home would silently share this store.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if settings.mlflow_registry_uri:
        mlflow.set_registry_uri(settings.mlflow_registry_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        experiment_id: str = experiment.experiment_id
    else:
        experiment_id = client.create_experiment(
            settings.experiment_name, artifact_location=settings.artifact_location
        )
        log.info("created MLflow experiment %s (%s)", settings.experiment_name, experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
