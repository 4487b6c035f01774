"""The served model: loaded from the registry alias, cached on disk, watched and swapped atomically.

:class:`ModelStore` holds one :class:`LoadedModel` reference. Request handling reads it once per
model call; a watcher thread polls the alias every ``model_watch_interval_s`` and, when it moved,
downloads, loads and warms the new version off the request path, then replaces the reference in a
single assignment. In-flight calls finish with the model they started with.

Every model loaded from the registry is also kept under ``settings.model_cache_dir`` (the model
files plus a ``metadata.json``) and named by ``current.json``, written atomically. When MLflow
cannot be reached at start-up the store loads that copy instead, so a restart without MLflow
still serves the last good model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.errors import ModelNotFoundError, ModelRefusedError
from price_alchemy.explain import Explainer
from price_alchemy.model_files import load_model_dir
from price_alchemy.names import REFERENCE_LISTINGS, TEST_RMSLE_TAG
from price_alchemy.price_range import PriceInterval
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.serving.schemas import EXAMPLE_LISTING

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelMetadata", "ModelStore", "PriceInterval", "listings_frame"]

POINTER = "current.json"
METADATA = "metadata.json"
#: The profile's reference listings, kept beside a cached model (plain JSON, for ``similar``).
REFERENCES_FILE = "reference-listings.json"


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str
    alias: str
    run_id: str | None
    trained_at: datetime | None
    test_rmsle: float | None
    price_interval: PriceInterval | None
    digest: str | None = None  # the model file's SHA-256 recorded at registration

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trained_at"] = self.trained_at.isoformat() if self.trained_at else None
        data["price_interval"] = self.price_interval.to_profile() if self.price_interval else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelMetadata:
        interval = data.get("price_interval")
        trained_at = data.get("trained_at")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            alias=str(data["alias"]),
            run_id=data.get("run_id"),
            trained_at=datetime.fromisoformat(trained_at) if trained_at else None,
            test_rmsle=data.get("test_rmsle"),
            price_interval=PriceInterval.from_profile({"price_interval": interval}) if interval else None,
            digest=data.get("digest"),
        )


@dataclass(frozen=True)
class LoadedModel:
    """A pipeline ready to predict, with what the API reports about it."""

    pipeline: Any
    meta: ModelMetadata
    source: str  # "registry" or "cache"
    loaded_at: datetime
    explainer: Explainer | None = None  # None: the model cannot explain (``explain_error`` says why)
    explain_error: str | None = None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Dollar prices for a frame of ``FEATURE_COLUMNS`` (the registered pipeline, unchanged)."""
        import sklearn

        # Skips sklearn's per-call parameter and finiteness checks (a few ms per call): the
        # pipeline's own cleaning produces the finite inputs these checks would verify.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(self.pipeline.predict(frame), dtype=np.float64)


def listings_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of listing fields -> the frame the pipeline takes (int64 condition and shipping)."""
    frame = pd.DataFrame({column: [row.get(column) for row in rows] for column in FEATURE_COLUMNS})
    return frame.astype({"item_condition_id": "int64", "shipping": "int64"})


def _explainer(pipeline: Any, references: Any, what: str) -> tuple[Explainer | None, str | None]:
    """The model's explainer, warmed on the example listing; or None and why (it still serves prices)."""
    try:
        explainer = Explainer(pipeline, references)
        explainer.explain(listings_frame([EXAMPLE_LISTING]))
    except Exception as exc:  # an estimator the explainer does not know: prices only
        log.warning("%s cannot explain its prices: %s: %s", what, type(exc).__name__, exc)
        return None, f"{what} cannot explain its prices ({type(exc).__name__})"
    if explainer.similar_unavailable is not None:
        log.info("%s: explanations without similar listings: %s", what, explainer.similar_unavailable)
    return explainer, None


class ModelStore:
    """The current model, its local cache, and the alias watcher."""

    def __init__(
        self,
        settings: Settings,
        on_swap: Callable[[LoadedModel], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cache_dir = settings.model_cache_dir
        self._current: LoadedModel | None = None
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one load at a time (watcher vs an explicit refresh)
        self.last_error: str | None = None
        #: The version the alias points at that was refused as unsafe (the served one stays).
        self.refused_version: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    # --- registry -------------------------------------------------------------------------
    def registry_version(self) -> str:
        """The version the alias points at now (raises when MLflow or the alias is unavailable)."""
        name, alias = self.settings.model_name, self.settings.model_alias
        try:
            return mlflow_store.lookup_alias(self.settings, alias).version
        except mlflow_store.MlflowException as exc:
            raise ModelNotFoundError(f"no version of {name!r} has alias {alias!r}: {exc}") from exc

    def _load_from_registry(self, version: str) -> LoadedModel:
        name = self.settings.model_name
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".staging-{uuid.uuid4().hex[:8]}"
        try:
            model_dir, info, profile = mlflow_store.download_version(self.settings, version, staging)
            rmsle = info.tags.get(TEST_RMSLE_TAG)
            meta = ModelMetadata(
                name=name,
                version=str(version),
                alias=self.settings.model_alias,
                run_id=info.run_id,
                trained_at=info.created_at,
                test_rmsle=float(rmsle) if rmsle not in (None, "") else None,
                price_interval=None if profile is None else PriceInterval.from_profile(profile),
                digest=info.digest,
            )
            references = None if profile is None else profile.get(REFERENCE_LISTINGS)
            loaded = self._load_dir(model_dir, meta, source="registry", references=references)
            (model_dir / METADATA).write_text(json.dumps(meta.to_json(), indent=2))
            if references is not None:
                (model_dir / REFERENCES_FILE).write_text(json.dumps(references))
            self._commit_cache(model_dir, meta)
            return loaded
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --- local cache ----------------------------------------------------------------------
    def _commit_cache(self, model_dir: Path, meta: ModelMetadata) -> None:
        """Move the downloaded model into the cache and point ``current.json`` at it (atomic)."""
        target = self.cache_dir / f"v{meta.version}-{uuid.uuid4().hex[:8]}"
        os.replace(model_dir, target)
        tmp = self.cache_dir / f".{POINTER}.tmp"
        tmp.write_text(json.dumps({"dir": target.name, **meta.to_json()}, indent=2))
        os.replace(tmp, self.cache_dir / POINTER)
        for old in self.cache_dir.iterdir():  # keep only what the pointer names
            if old.is_dir() and old.name != target.name and not old.name.startswith(".staging"):
                shutil.rmtree(old, ignore_errors=True)

    def load_cached(self) -> LoadedModel:
        """The last model loaded from the registry for this name and alias, from local disk."""
        pointer = self.cache_dir / POINTER
        try:
            data = json.loads(pointer.read_text())
            meta = ModelMetadata.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelNotFoundError(f"no usable cached model in {self.cache_dir}: {exc}") from exc
        if (meta.name, meta.alias) != (self.settings.model_name, self.settings.model_alias):
            raise ModelNotFoundError(
                f"cached model is {meta.name}@{meta.alias}, not "
                f"{self.settings.model_name}@{self.settings.model_alias}"
            )
        model_dir = self.cache_dir / str(data["dir"])
        try:
            references = json.loads((model_dir / REFERENCES_FILE).read_text())
        except (OSError, ValueError):
            references = None
        return self._load_dir(model_dir, meta, source="cache", references=references)

    @staticmethod
    def _load_dir(model_dir: Path, meta: ModelMetadata, source: str, references: Any = None) -> LoadedModel:
        """Load (safely) and warm up a model directory; refuse a model that cannot price a listing.

        The cached copy is held to the digest recorded at registration just as a download is, so a
        file swapped in the cache is refused too; a cache written before digests existed is refused.
        """
        what = f"{meta.name} v{meta.version} ({source})"
        if meta.digest is None:
            raise ModelRefusedError(f"{what}: no registered digest to check the model file against")
        try:
            pipeline = load_model_dir(model_dir, expected_digest=meta.digest, what=what)
        except ModelRefusedError:
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load {meta.name} v{meta.version} from {model_dir}: {exc}"
            ) from exc
        loaded = LoadedModel(pipeline, meta, source, datetime.now(UTC))
        warm = loaded.predict(listings_frame([EXAMPLE_LISTING]))
        if warm.shape != (1,) or not np.all(np.isfinite(warm)):
            raise ModelNotFoundError(f"{meta.name} v{meta.version} gave {warm!r} for the example listing")
        explainer, explain_error = _explainer(pipeline, references, what)
        return LoadedModel(pipeline, meta, source, loaded.loaded_at, explainer, explain_error)

    # --- lifecycle ------------------------------------------------------------------------
    def _swap(self, loaded: LoadedModel) -> None:
        self._current = loaded  # one reference assignment: atomic for readers
        self.last_error = None
        m = loaded.meta
        log.info("serving %s v%s (%s@%s, from %s)", m.name, m.version, m.name, m.alias, loaded.source)
        if self._on_swap is not None:
            self._on_swap(loaded)

    def _failed(self, message: str) -> None:
        self.last_error = message
        if self._on_failure is not None:
            self._on_failure()

    def load_initial(self) -> None:
        """At start-up: the alias's version from the registry, else the cached copy, else nothing."""
        try:
            self.refresh()
        except Exception as exc:
            log.warning("cannot load the model from the registry (%s); trying the local cache", exc)
            try:
                self._swap(self.load_cached())
                if isinstance(exc, ModelRefusedError):  # the alias points at a refused version: say so
                    self.last_error = str(exc)
            except ModelNotFoundError as cache_exc:
                self._failed(f"registry: {exc}; cache: {cache_exc}")
                log.error("no model to serve: %s", self.last_error)

    def refresh(self) -> bool:
        """Load and swap in the alias's version if it differs from the one served; True if swapped.

        A version refused as unsafe is remembered (``refused_version``) and not downloaded again
        until the alias moves; the served model stays. Reaching the registry and finding the
        served version clears a stale ``last_error``.
        """
        with self._lock:
            version = self.registry_version()
            current = self._current
            if current is not None and current.meta.version == version:
                self.last_error, self.refused_version = None, None
                return False
            if version == self.refused_version:
                return False
            try:
                loaded = self._load_from_registry(version)
            except ModelRefusedError as exc:
                self.refused_version, self.last_error = version, str(exc)
                log.error("refused %s: %s; still serving %s", version, exc, current and current.meta.version)
                raise
            self._swap(loaded)
            self.refused_version = None
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.model_watch_interval_s):
            try:
                self.refresh()
            except Exception as exc:  # MLflow down, a broken version...: keep serving the last good model
                self._failed(f"{type(exc).__name__}: {exc}")
                log.warning("model refresh failed, still serving the current model: %s", exc)

    def start_watcher(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def stop_watcher(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
