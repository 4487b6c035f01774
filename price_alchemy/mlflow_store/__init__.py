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

Lineage: a training run logs its training, validation and test listings as MLflow datasets
(:func:`log_datasets`: ``mlflow.log_input`` with contexts ``training``/``validation``/``test``, the
source it was given plus the warehouse batches of the rows, a content digest), shown under
"Datasets" on the run page; its test metrics are linked to the logged model and the test dataset
(:func:`log_model_metrics`), and the registered version carries ``price_alchemy.dataset.<context>``
tags naming them (:func:`dataset_tags`). :func:`run_datasets` reads them back, :func:`search_runs`
gives an experiment's runs as a frame (notebooks).

Two ways in, on purpose:

- :func:`configure` points the process-wide fluent API (``mlflow.start_run`` and friends) at the
  configured store and experiment; entry points call it once per process, before a training run.
- :func:`client` builds an explicit client for the configured URIs, for code that must not depend
  on process-wide state (the API's model watcher runs in a thread next to request handling).
"""

from mlflow.exceptions import MlflowException

from price_alchemy.mlflow_store.lease import promotion_lock
from price_alchemy.mlflow_store.registry import (
    VersionInfo,
    alias_version,
    download_version,
    load_model,
    load_version,
    log_model,
    lookup_alias,
    model_requirements,
    record_promotion,
    register_model,
    registry_version,
    require_alias,
    resolve_model_uri,
    set_alias,
    version_info,
    version_uri,
)
from price_alchemy.mlflow_store.tracking import (
    DatasetRef,
    RunTarget,
    active_run_id,
    client,
    configure,
    dataset_digest,
    dataset_tags,
    download,
    ensure_experiment,
    load_run_dict,
    log_datasets,
    log_dict,
    log_file,
    log_folder,
    log_metric,
    log_metrics,
    log_model_metrics,
    log_param,
    log_params,
    log_text,
    run,
    run_datasets,
    run_profile,
    run_tags,
    search_runs,
    serving_defaults,
    set_tag,
    set_tags,
)

__all__ = [
    "DatasetRef",
    "MlflowException",
    "RunTarget",
    "VersionInfo",
    "active_run_id",
    "alias_version",
    "client",
    "configure",
    "dataset_digest",
    "dataset_tags",
    "download",
    "download_version",
    "ensure_experiment",
    "load_model",
    "load_run_dict",
    "load_version",
    "log_datasets",
    "log_dict",
    "log_file",
    "log_folder",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_model_metrics",
    "log_param",
    "log_params",
    "log_text",
    "lookup_alias",
    "model_requirements",
    "promotion_lock",
    "record_promotion",
    "register_model",
    "registry_version",
    "require_alias",
    "resolve_model_uri",
    "run",
    "run_datasets",
    "run_profile",
    "run_tags",
    "search_runs",
    "serving_defaults",
    "set_alias",
    "set_tag",
    "set_tags",
    "version_info",
    "version_uri",
]
