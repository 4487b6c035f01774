"""Tracking: where MLflow lives, experiments, runs, their artifacts and input datasets (lineage),
and the one ``MlflowClient`` builder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import Dataset as DatasetEntity
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from price_alchemy.errors import ModelNotFoundError
from price_alchemy.names import PROFILE_ARTIFACT
from price_alchemy.schema import PRICE

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
    uri = settings.tracking_uri
    return _client_for(uri, settings.mlflow_registry_uri or uri)


def _client_for(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    _client_defaults()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


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


@dataclass(frozen=True)
class RunTarget:
    """Where runs opened in another process (a Spark task) log: the store, the experiment and the
    parent run, captured on the driver and passed to the worker (which has none of that state)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None

    @classmethod
    def current(cls) -> RunTarget:
        """This process's store and experiment, and its active run as the parent (if any)."""
        active = mlflow.active_run()
        if active is not None:
            experiment_id, parent = str(active.info.experiment_id), str(active.info.run_id)
        else:  # what a nested=True run would use here: the experiment set by configure()
            experiment_id, parent = str(mlflow.tracking.fluent._get_experiment_id() or "0"), None
        return cls(mlflow.get_tracking_uri(), experiment_id, parent)

    @contextmanager
    def child_run(self, run_name: str) -> Iterator[str]:
        """Open a run under the parent in this (worker) process; yields its id. Fluent logging inside
        goes to it, as within :func:`run`."""
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(
            experiment_id=self.experiment_id, run_name=run_name, parent_run_id=self.parent_run_id
        ) as active:
            yield str(active.info.run_id)

    def rename(self, run_id: str, run_name: str) -> None:
        """Give a finished run its name (trial numbers are known on the driver only)."""
        _client_for(self.tracking_uri).update_run(run_id, name=run_name)


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


def run_tags(settings: Settings, run_id: str) -> dict[str, str]:
    """The tags of a run (``source``, ``price_alchemy.stage``, ...)."""
    return dict(client(settings).get_run(run_id).data.tags)


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


def search_runs(
    settings: Settings,
    *,
    experiment: str | None = None,
    filter_string: str = "",
    max_results: int = 1000,
    order_by: Sequence[str] = ("attributes.start_time DESC",),
) -> pd.DataFrame:
    """Runs of an experiment (default: the training one) as a frame: one row per run, with
    ``run_id``, ``status``, ``start_time``, ``tags.*``, ``params.*`` and ``metrics.*`` columns
    (MLflow's ``search_runs`` layout); empty when the experiment does not exist."""
    found = client(settings).get_experiment_by_name(experiment or settings.experiment_name)
    if found is None:
        return pd.DataFrame()
    runs = mlflow.search_runs(
        experiment_ids=[found.experiment_id],
        filter_string=filter_string,
        max_results=max_results,
        order_by=list(order_by),
        output_format="pandas",
    )
    return cast(pd.DataFrame, runs)


# --- lineage: the listings a run trained, validated and tested on ----------------------------
#: At most this many batch ids are named in a dataset's source (its JSON must stay under 64 KB).
MAX_NAMED_BATCHES = 500
#: Model version tags naming the datasets of the version's run, one per context.
DATASET_TAG_PREFIX = "price_alchemy.dataset."
_BATCH_COLUMN = "batch_id"


class ListingsSource(DatasetSource):
    """Where a run's listings came from: the source it was given (``file:<path>``,
    ``warehouse:<backend>[:<query or batches>]``, ...) and the warehouse batches its rows belong to."""

    def __init__(self, source: str, batch_ids: Sequence[str] = (), batches: int | None = None) -> None:
        self.source = source
        self.batch_ids = list(batch_ids)[:MAX_NAMED_BATCHES]
        self.batches = len(batch_ids) if batches is None else batches

    @staticmethod
    def _get_source_type() -> str:
        return "price_alchemy"

    def load(self) -> Any:
        raise NotImplementedError("listings are read through price_alchemy, not from a dataset source")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> ListingsSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "batches": self.batches, "batch_ids": self.batch_ids}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> ListingsSource:
        ids = [str(b) for b in source_dict.get("batch_ids") or []]
        return cls(str(source_dict.get("source", "")), ids, int(source_dict.get("batches", len(ids))))


class ListingsDataset(PandasDataset):
    """MLflow's pandas dataset, its schema inferred from a sample: MLflow's own inference visits every
    value of every text column in Python (about 10 s a million rows, for each part)."""

    SCHEMA_ROWS = 10_000

    @cached_property
    def schema(self) -> Schema | None:
        frame = self.df
        with warnings.catch_warnings():  # the integer-column hint is about model inputs, not data
            warnings.simplefilter("ignore", UserWarning)
            inferred = infer_signature(frame.head(self.SCHEMA_ROWS)).inputs
        nullable = frame.isna().any()
        return Schema([ColSpec(c.type, c.name, required=not bool(nullable[c.name])) for c in inferred.inputs])


@dataclass(frozen=True)
class DatasetRef:
    """One input dataset of a run, as MLflow recorded it."""

    context: str
    name: str
    digest: str
    rows: int
    source: str
    batches: int = 0
    batch_ids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        batches = f", {self.batches} batches" if self.batches else ""
        return f"{self.name} ({self.rows} rows, digest {self.digest}{batches}) from {self.source}"


def dataset_digest(frame: pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of every row's content and the column names, whatever the row
    order: the same listings give the same digest however they were read (MLflow's own digest
    hashes only the first 10,000 rows)."""
    rows = np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64))
    digest = hashlib.sha256(rows.tobytes())
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    return digest.hexdigest()[:16]


def _batch_ids(frame: pd.DataFrame) -> list[str]:
    if _BATCH_COLUMN not in frame.columns:
        return []
    return sorted(str(b) for b in frame[_BATCH_COLUMN].dropna().unique())


def log_datasets(parts: Mapping[str, pd.DataFrame], source: str) -> dict[str, DatasetRef]:
    """Log each frame as an input dataset of the active run, ``{context: frame}`` (``training``,
    ``validation``, ``test``), named ``listings-<context>``; shown under "Datasets" on the run page.

    Logging the same rows again in the same context changes nothing (MLflow keeps one input).
    """
    refs: dict[str, DatasetRef] = {}
    for context, frame in parts.items():
        ids = _batch_ids(frame)
        listings_source = ListingsSource(source, ids)
        dataset = ListingsDataset(
            frame,
            source=listings_source,
            name=f"listings-{context}",
            targets=PRICE if PRICE in frame.columns else None,
            digest=dataset_digest(frame),
        )
        mlflow.log_input(dataset, context=context)
        refs[context] = DatasetRef(context, dataset.name, dataset.digest, len(frame), source, len(ids), ids)
    return refs


def log_model_metrics(model_uri: str, metrics: Mapping[str, float], dataset: DatasetRef) -> None:
    """``metrics`` of the active run and of the logged model at ``model_uri``, measured on
    ``dataset``: MLflow links the logged model, whose URI every registered version of it has as its
    source, to that dataset by name and digest (only metrics logged with both are linked)."""
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    entity = DatasetEntity(
        name=dataset.name,
        digest=dataset.digest,
        source_type=ListingsSource._get_source_type(),
        source=ListingsSource(dataset.source, dataset.batch_ids, dataset.batches).to_json(),
    )
    mlflow.log_metrics(dict(metrics), model_id=model_id, dataset=entity)


def run_datasets(settings: Settings, run_id: str) -> list[DatasetRef]:
    """The input datasets a run logged, in the order logged."""
    refs = []
    inputs = client(settings).get_run(run_id).inputs
    for item in inputs.dataset_inputs if inputs is not None else []:
        tags = {t.key: t.value for t in item.tags}
        dataset = item.dataset
        raw: dict[str, Any] = json.loads(dataset.source) if dataset.source else {}
        profile: dict[str, Any] = json.loads(dataset.profile) if dataset.profile else {}
        refs.append(
            DatasetRef(
                context=tags.get("mlflow.data.context", ""),
                name=dataset.name,
                digest=dataset.digest,
                rows=int(profile.get("num_rows", 0)),
                source=str(raw.get("source", dataset.source)),
                batches=int(raw.get("batches", 0)),
                batch_ids=[str(b) for b in raw.get("batch_ids") or []],
            )
        )
    return refs


def dataset_tags(settings: Settings, run_id: str) -> dict[str, str]:
    """Model version tags naming the datasets of the version's run: ``price_alchemy.dataset.<context>``."""
    return {
        f"{DATASET_TAG_PREFIX}{ref.context}": ref.describe()[:5000] for ref in run_datasets(settings, run_id)
    }
