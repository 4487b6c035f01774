"""Schemathesis: inputs generated from the OpenAPI schema (valid and invalid) never get a 5xx.

The schema's operations are fuzzed with Hypothesis strategies from schemathesis (positive and
negative generation) against the in-process app (ASGI), whose lifespan loads the real model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from serving_helpers import Registry

from price_alchemy.config import Settings
from price_alchemy.serving.app import create_app

pytestmark = pytest.mark.api
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, settings_factory: Callable[..., Settings]
) -> schemathesis.BaseSchema:
    home: Path = tmp_path_factory.mktemp("fuzz") / "home"
    settings = settings_factory(home, mlflow_tracking_uri=registry.tracking_uri, max_batch_size=20)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, watch=False))


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
CASES = [
    ("POST /v1/predict", POSITIVE),
    ("POST /v1/predict", NEGATIVE),
    ("POST /v1/predict/batch", POSITIVE),
    ("POST /v1/predict/batch", NEGATIVE),
    ("GET /v1/model", POSITIVE),
    ("GET /health/ready", POSITIVE),
    ("GET /metrics", POSITIVE),
]  # routes without parameters have no negative cases


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_no_generated_input_gets_a_server_error(
    api_schema: schemathesis.BaseSchema, label: str, mode: GenerationMode
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
        )

    check()
    assert statuses and max(statuses) < 500
    if label.startswith("POST") and mode is GenerationMode.POSITIVE:
        assert 200 in statuses  # schema-valid listings are priced, not merely refused
    if label.startswith("POST") and mode is GenerationMode.NEGATIVE:
        assert 422 in statuses
