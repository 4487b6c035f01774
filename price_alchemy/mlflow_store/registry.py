"""The model registry: logged and registered models, versions, aliases, safe loading, promotion records."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from price_alchemy.errors import ModelNotFoundError, ModelRefusedError
from price_alchemy.estimators import TRUSTED_TYPES
from price_alchemy.mlflow_store.tracking import client, download
from price_alchemy.model_files import check_model_dir, file_digest, load_model_dir, model_digest
from price_alchemy.names import (
    CHAMPION,
    MODEL_ARTIFACT,
    MODEL_DIGEST_TAG,
    PROFILE_ARTIFACT,
    PROFILE_DIGEST_TAG,
    PROMOTION_ARTIFACT,
    RUN_ID_TAG,
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


def register_model(
    settings: Settings, model_uri: str, tags: Mapping[str, str], *, run_id: str | None = None
) -> str:
    """A new version of ``settings.model_name`` from a logged model, pinned to the digests of its
    model file and of its run's training profile (which holds the price interval)."""
    pins: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pins[MODEL_DIGEST_TAG] = model_digest(download(settings, model_uri, Path(tmp)))
        if run_id:
            try:
                profile = download(settings, f"runs:/{run_id}/{PROFILE_ARTIFACT}", Path(tmp) / "profile")
                pins[PROFILE_DIGEST_TAG] = file_digest(profile)
            except MlflowException:
                log.warning("run %s has no %s to pin", run_id, PROFILE_ARTIFACT)
    registered = mlflow.register_model(model_uri, settings.model_name, tags={**tags, **pins})
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
    return VersionInfo(str(mv.name), str(mv.version), mv.run_id or tags.get(RUN_ID_TAG), tags, created)


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
    if run_id:  # through the client: no dependence on the process-wide tracking URI
        for key, value in tags.items():
            mlflow_client.set_tag(run_id, key, value)
        mlflow_client.log_dict(run_id, dict(record), PROMOTION_ARTIFACT)


def _download_version(settings: Settings, info: VersionInfo, destination: Path) -> Path:
    """A version's model files in ``destination``, checked; ``info.digest`` set (pinned if legacy).

    A version registered before digests existed (no tag) is checked for format and types without
    being deserialized, then pinned: its digest is recorded now, trust on first use, and every
    later load is held to it. A version with a digest must match it.
    """
    model_dir = download(
        settings, client(settings).get_model_version_download_uri(info.name, info.version), destination
    )
    if info.digest is None:
        check_model_dir(model_dir, info.label)
        digest = model_digest(model_dir)
        client(settings).set_model_version_tag(info.name, info.version, MODEL_DIGEST_TAG, digest)
        info.tags[MODEL_DIGEST_TAG] = digest
        log.warning(
            "%s had no %s (registered before digests): pinned to %s", info.label, MODEL_DIGEST_TAG, digest
        )
    return model_dir


def load_version(settings: Settings, info: VersionInfo) -> Any:
    """The pipeline of a registered version, loaded safely (:func:`model_files.load_model_dir`)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _download_version(settings, info, Path(tmp))
        return load_model_dir(model_dir, expected_digest=info.digest, what=info.label)


_MODELS_URI = re.compile(r"^models:/*(?P<name>[^/@]+)(?P<sep>[/@])(?P<ref>[^/@]+)/*$", re.IGNORECASE)


def registry_version(settings: Settings, uri: str) -> VersionInfo | None:
    """The version a ``models:`` URI names (an alias resolved now), or None for any other URI.

    Only the configured registered model is served from the registry, in any spelling of the URI
    (``models:/<name>/<version>``, ``models:/<name>@<alias>``); another name is refused.
    """
    if not uri.lower().startswith("models:"):
        return None
    match = _MODELS_URI.match(uri)
    if match is None or match["name"] != settings.model_name:
        raise ModelRefusedError(
            f"{uri}: only models:/{settings.model_name}/<version> or models:/{settings.model_name}@<alias> "
            "are loaded from the registry"
        )
    if match["sep"] == "@":
        return require_alias(settings, match["ref"])
    return version_info(settings, match["ref"])


def load_model(settings: Settings, uri: str) -> Any:
    """The pipeline behind a model URI, loaded safely.

    A ``models:`` URI must name the configured registered model (:func:`registry_version`), and its
    file must match the digest recorded at registration. Any other URI (``runs:/...``, a local
    path) gets the format, type and pipeline checks only, and a warning.
    """
    info = registry_version(settings, uri)
    if info is not None:
        return load_version(settings, info)
    log.warning("loading %s without a registered digest (format and trusted types still checked)", uri)
    with tempfile.TemporaryDirectory() as tmp:
        return load_model_dir(download(settings, uri, Path(tmp)), expected_digest=None, what=uri)


def _profile(settings: Settings, info: VersionInfo, destination: Path) -> dict[str, Any] | None:
    """The version's training profile, held to its registered digest; None when the run has none."""
    import json

    if not info.run_id:
        return None
    try:
        path = Path(client(settings).download_artifacts(info.run_id, PROFILE_ARTIFACT, str(destination)))
    except Exception as exc:  # an older run without a profile: served without a price range
        log.warning("%s has no usable %s: %s", info.label, PROFILE_ARTIFACT, exc)
        return None
    pinned = info.tags.get(PROFILE_DIGEST_TAG)
    if pinned is not None and file_digest(path) != pinned:
        raise ModelRefusedError(f"{info.label}: {PROFILE_ARTIFACT} differs from the one registered with it")
    try:
        profile = json.loads(path.read_text())
    except ValueError as exc:
        log.warning("%s: %s is not JSON: %s", info.label, PROFILE_ARTIFACT, exc)
        return None
    return profile if isinstance(profile, dict) else None


def download_version(
    settings: Settings, version: str, destination: Path
) -> tuple[Path, VersionInfo, dict[str, Any] | None]:
    """A version's model files in ``destination`` (checked, not loaded), its info and its profile.

    The profile (``PROFILE_ARTIFACT`` of the version's run, held to its registered digest) is None
    for a run that logged none.
    """
    info = version_info(settings, version)
    model_dir = _download_version(settings, info, destination)
    return model_dir, info, _profile(settings, info, destination)
