"""API fixtures: one small model trained into a registry for the session; an app per test.

Each test gets its own home (request log, model cache) and points at the session's MLflow store,
so tests never see each other's events or caches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_helpers import AppFactory, Registry

from price_alchemy.config import Settings
from price_alchemy.params import Params
from price_alchemy.serving.app import create_app
from price_alchemy.training.stages import run_training


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
    params: Params,
    synthetic_listings: pd.DataFrame,
    mlflow_reset: Callable[[], None],
    settings_factory: Callable[..., Settings],
) -> Iterator[Registry]:
    settings = settings_factory(tmp_path_factory.mktemp("api-registry") / "home")
    try:
        # The range fits the listing from 100 test rows (the packaged 400 is more than 1,500 listings
        # have), so the API is tested serving what a production-sized training run makes.
        training = params.training.model_copy(update={"adaptive_range_min_rows": 100})
        adaptive = params.model_copy(update={"training": training})
        result = run_training(synthetic_listings, settings, adaptive, source="test:api")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        profile = Path(client.download_artifacts(result.run_id, "reference/profile.json"))
        interval = json.loads(profile.read_text())["price_interval"]
    finally:
        mlflow_reset()
    yield Registry(
        settings.tracking_uri, result.model_version, result.run_id, result.test_metrics["rmsle"], interval
    )


@pytest.fixture
def api_settings(tmp_path: Path, registry: Registry, settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(tmp_path / "home", mlflow_tracking_uri=registry.tracking_uri)


@pytest.fixture
def make_client(
    tmp_path: Path, registry: Registry, settings_factory: Callable[..., Settings]
) -> Iterator[AppFactory]:
    """``make_client(**settings overrides)``: a started app (lifespan run) with a TestClient."""
    opened: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        overrides.setdefault("mlflow_tracking_uri", registry.tracking_uri)
        settings = settings_factory(tmp_path / "home", **overrides)
        client = TestClient(create_app(settings, watch=False), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: AppFactory) -> TestClient:
    return make_client()
