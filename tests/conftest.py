"""Shared fixtures: isolated settings, a small training budget, synthetic listings, clean MLflow state.

MLflow keeps process-wide state: the tracking and registry URIs, the active experiment and run,
and the environment variables it exports for subprocesses (``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_ID``, ...). ``Settings`` reads ``MLFLOW_TRACKING_URI`` too, so a store
configured by one test would become the "explicit" store of the next one. Every test therefore
starts without any ``MLFLOW_*`` / ``PRICE_ALCHEMY_*`` variable from the developer's shell and
ends with :func:`reset_mlflow`; module-scoped fixtures that train call it in their teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from price_alchemy.config import Settings, get_settings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.params import Params, load_params

pytest_plugins = ["integration.elasticsearch_fixtures"]  # elasticsearch_node, es_client, es_clean, ...

ENV_PREFIXES = ("MLFLOW_", "PRICE_ALCHEMY_")
#: Rows of the shared synthetic sample: enough for a meaningful model, small enough to train in seconds.
SYNTHETIC_ROWS = 1500
SYNTHETIC_SEED = 7

SettingsFactory = Callable[[Path], Settings]


def reset_mlflow() -> None:
    """End any active run and forget the tracking/registry URIs, the experiment and their env exports."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking.fluent as fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None also unsets MLFLOW_TRACKING_URI
    registry_utils._registry_uri = None
    fluent._active_experiment_id = None
    for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
        del os.environ[name]


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for an embedded DuckDB warehouse and SQLite MLflow store under ``home`` (no .env)."""
    return Settings(_env_file=None, home=home, warehouse="duckdb", **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> Iterator[None]:
    """Hide the developer's MLFLOW_* / PRICE_ALCHEMY_* variables from the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(ENV_PREFIXES)]:
            patch.delenv(name)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_mlflow() -> Iterator[None]:
    """No MLflow URI, experiment, run or cached settings survives a test."""
    yield
    reset_mlflow()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def settings_factory() -> SettingsFactory:
    """``make_settings`` for module-scoped fixtures (which cannot use ``tmp_path``)."""
    return make_settings


@pytest.fixture(scope="session")
def mlflow_reset() -> Callable[[], None]:
    """:func:`reset_mlflow`, for fixtures that train once per module and clean up in teardown."""
    return reset_mlflow


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Isolated settings under ``tmp_path/home``; the environment says the same for ``get_settings()``.

    The working directory moves to ``tmp_path`` so that no ``.env`` file or stray ``./mlruns`` of
    the repository is read or written.
    """
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRICE_ALCHEMY_HOME", str(home))
    get_settings.cache_clear()
    return make_settings(home)


def small_budget(params: Params, *, families: tuple[str, ...] = ("ridge",)) -> Params:
    """``params`` with a tuning budget (3 trials, 20 s) and model sizes that train in seconds."""
    budget = params.with_budget(max_evals=3, timeout=20)
    lightgbm = budget.tuning.lightgbm.model_copy(
        update={"n_estimators": (30, 80), "num_leaves": (8, 24), "max_columns": 2000}
    )
    tuning = budget.tuning.model_copy(update={"families": families, "lightgbm": lightgbm})
    features = budget.features.model_copy(
        update={"name_max_features": 5000, "text_max_features": 10_000, "char_max_features": 5000}
    )
    return budget.model_copy(update={"tuning": tuning, "features": features})


@pytest.fixture(scope="session")
def params() -> Params:
    """Packaged parameters with a small, deterministic budget: ridge only, 3 trials, 20 s."""
    return small_budget(load_params())


@pytest.fixture(scope="session")
def synthetic_listings() -> pd.DataFrame:
    """1,500 synthetic priced listings (same every run). Shared: copy before changing it."""
    return generate_listings(SYNTHETIC_ROWS, seed=SYNTHETIC_SEED)


@pytest.fixture
def listings(synthetic_listings: pd.DataFrame) -> pd.DataFrame:
    """A private copy of :func:`synthetic_listings` that a test may change."""
    return synthetic_listings.copy()
