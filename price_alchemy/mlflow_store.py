"""The one door to MLflow: tracking set-up, runs, logged and registered models, aliases, side-cars.

Everything the package asks of MLflow goes through this module: training logs its runs and models
and records promotions here, the API downloads the served version here, the drift monitor finds
the champion's profile and logs its own runs here, batch prediction resolves and loads a model
here. Nothing else in the package imports ``mlflow`` or builds an ``MlflowClient``, so the
tracking and registry URIs, the client defaults and the way a model is loaded are decided once.

Models are loaded through :mod:`price_alchemy.model_files` only, never by MLflow's own loader
(which trusts the format and types a model declares): skops only, the package's trusted types
only, and the file whose SHA-256 was recorded when the version was registered
(``names.MODEL_DIGEST_TAG``), so a version's files cannot be swapped under its number.

Two ways in, on purpose:

- :func:`configure` points the process-wide fluent API (``mlflow.start_run`` and friends) at the
  configured store and experiment; entry points call it once per process, before a training run.
- :func:`client` builds an explicit client for the configured URIs, for code that must not depend
  on process-wide state (the API's model watcher runs in a thread next to request handling).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from price_alchemy.errors import ModelNotFoundError, ModelRefusedError
from price_alchemy.estimators import TRUSTED_TYPES
from price_alchemy.model_files import load_model_dir, model_digest
from price_alchemy.names import (
    CHAMPION,
    MODEL_ARTIFACT,
    MODEL_DIGEST_TAG,
    PROFILE_ARTIFACT,
    PROMOTION_ARTIFACT,
)

if TYPE_CHECKING:
    import pandas as pd

    from price_alchemy.config import Settings

log = logging.getLogger(__name__)

#: Distributions pinned in a saved model's requirements (MLflow's own inference reloads the model).
PINNED_DISTRIBUTIONS = (
    "price-alchemy",
    "scikit-learn",
    "lightgbm",
    "pandas",
    "numpy",
    "scipy",
    "skops",
    "mlflow",
)


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
    import tempfile

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


# --- models ----------------------------------------------------------------------------------
def model_requirements() -> list[str]:
    """Pinned runtime requirements of a saved model (explicit: MLflow's inference loads the model again)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in PINNED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


def log_model(pipeline: Any, example: pd.DataFrame) -> str:
    """Log ``pipeline`` to the active run in the skops format (only ``TRUSTED_TYPES``); its URI."""
    info = mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_ARTIFACT,
        signature=infer_signature(example, pipeline.predict(example)),
        input_example=example,
        pip_requirements=model_requirements(),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=list(TRUSTED_TYPES),
    )
    return str(info.model_uri)


def _download(settings: Settings, uri: str, destination: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(destination), tracking_uri=settings.tracking_uri
        )
    )


def register_model(settings: Settings, model_uri: str, tags: Mapping[str, str]) -> str:
    """A new version of ``settings.model_name`` from a logged model, pinned to its file's digest."""
    with tempfile.TemporaryDirectory() as tmp:
        digest = model_digest(_download(settings, model_uri, Path(tmp)))
    registered = mlflow.register_model(
        model_uri, settings.model_name, tags={**tags, MODEL_DIGEST_TAG: digest}
    )
    return str(registered.version)


def version_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


@dataclass(frozen=True)
class VersionInfo:
    """What the package needs to know about one registered version."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    created_at: datetime | None

    @property
    def uri(self) -> str:
        return version_uri(self.name, self.version)

    @property
    def digest(self) -> str | None:
        """The model file's SHA-256 recorded at registration (None: not registered by this package)."""
        return self.tags.get(MODEL_DIGEST_TAG) or None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _info(mv: Any) -> VersionInfo:
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    tags = dict(mv.tags or {})
    return VersionInfo(str(mv.name), str(mv.version), mv.run_id or tags.get("run_id"), tags, created)


def version_info(settings: Settings, version: str) -> VersionInfo:
    return _info(client(settings).get_model_version(settings.model_name, version))


def lookup_alias(settings: Settings, alias: str = CHAMPION) -> VersionInfo:
    """The version ``alias`` points at; raises :class:`MlflowException` (unknown alias, store down)."""
    return _info(client(settings).get_model_version_by_alias(settings.model_name, alias))


def alias_version(settings: Settings, alias: str = CHAMPION) -> VersionInfo | None:
    """The version ``alias`` points at, or None when no version has it (or the model is unknown)."""
    try:
        return lookup_alias(settings, alias)
    except MlflowException:
        return None


def require_alias(settings: Settings, alias: str = CHAMPION) -> VersionInfo:
    """:func:`alias_version`, raising :class:`ModelNotFoundError` with a way out when absent."""
    found = alias_version(settings, alias)
    if found is None:
        raise ModelNotFoundError(
            f"no version of registered model {settings.model_name!r} has alias {alias!r}; "
            "run `price-alchemy train` first"
        )
    return found


def resolve_model_uri(settings: Settings, alias: str = CHAMPION) -> str:
    """``models:/name@alias`` after checking that the alias exists (clear error otherwise)."""
    require_alias(settings, alias)
    return f"models:/{settings.model_name}@{alias}"


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, version)


def record_promotion(
    settings: Settings,
    version: str,
    *,
    promoted: bool,
    tags: Mapping[str, str],
    description: str,
    record: Mapping[str, Any],
) -> None:
    """Write a promotion decision: ``champion`` alias if promoted, tags and description on the
    version, and the same tags plus ``promotion.json`` on the version's training run."""
    mlflow_client = client(settings)
    name = settings.model_name
    if promoted:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    mlflow_client.update_model_version(name, version, description=description)
    run_id = version_info(settings, version).run_id
    if run_id:
        with run(run_id=run_id):
            set_tags(dict(tags))
            log_dict(dict(record), PROMOTION_ARTIFACT)


def _download_version(settings: Settings, info: VersionInfo, destination: Path) -> Path:
    """A version's model files in ``destination``; refused unless a registered digest pins them."""
    if info.digest is None:
        raise ModelRefusedError(f"{info.label}: no {MODEL_DIGEST_TAG} tag (not registered by price_alchemy)")
    return _download(
        settings, client(settings).get_model_version_download_uri(info.name, info.version), destination
    )


def load_version(settings: Settings, info: VersionInfo) -> Any:
    """The pipeline of a registered version, loaded safely (:func:`model_files.load_model_dir`)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _download_version(settings, info, Path(tmp))
        return load_model_dir(model_dir, expected_digest=info.digest, what=info.label)


def load_model(settings: Settings, uri: str) -> Any:
    """The pipeline behind a model URI, loaded safely.

    ``models:/<name>/<version>`` and ``models:/<name>@<alias>`` of the configured registered model
    must match the digest recorded at registration; any other URI (``runs:/...``, another model, a
    local path) gets the format and trusted-type checks only, and a warning.
    """
    prefix = f"models:/{settings.model_name}"
    if uri.startswith((prefix + "/", prefix + "@")):
        ref = uri[len(prefix) + 1 :]
        by_alias = uri[len(prefix)] == "@"
        return load_version(
            settings, require_alias(settings, ref) if by_alias else version_info(settings, ref)
        )
    log.warning("loading %s without a registered digest (format and trusted types still checked)", uri)
    with tempfile.TemporaryDirectory() as tmp:
        return load_model_dir(_download(settings, uri, Path(tmp)), expected_digest=None, what=uri)


def download_version(
    settings: Settings, version: str, destination: Path
) -> tuple[Path, VersionInfo, dict[str, Any] | None]:
    """A version's model files in ``destination`` (not loaded), its info and its training profile.

    The profile (``PROFILE_ARTIFACT`` of the version's run) is None for a run that logged none.
    """
    import json

    info = version_info(settings, version)
    model_dir = _download_version(settings, info, destination)
    profile = None
    if info.run_id:
        try:
            path = client(settings).download_artifacts(info.run_id, PROFILE_ARTIFACT, str(destination))
            profile = json.loads(Path(path).read_text())
        except Exception as exc:  # an older run without a profile: the caller decides
            log.warning("%s has no usable %s: %s", info.label, PROFILE_ARTIFACT, exc)
    return model_dir, info, profile


def run_profile(settings: Settings, run_id: str) -> dict[str, Any]:
    """The training profile a run logged; :class:`ModelNotFoundError` when it has none."""
    try:
        return load_run_dict(settings, run_id, PROFILE_ARTIFACT)
    except (MlflowException, OSError, ValueError) as exc:
        raise ModelNotFoundError(f"run {run_id} has no {PROFILE_ARTIFACT}") from exc
