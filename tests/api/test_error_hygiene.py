"""Error answers carry no internal text: a public message, a stable type and the request id.

The details (MLflow errors with host names, cache paths, exception text) go to the server log and
the request event under the same request id; an operator with the API key reads the load error on
``/v1/model``, never on ``/health/*``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from serving_helpers import LISTING, AppFactory, read_events

from price_alchemy.serving.handlers import NOT_READY_MESSAGE, PREDICTION_FAILED_MESSAGE
from price_alchemy.serving.middleware import ERROR_MESSAGE_CUT, INTERNAL_ERROR_MESSAGE

pytestmark = pytest.mark.api
UNREACHABLE = "http://127.0.0.1:9"  # discard port: connection refused at once
KEY = "operator-key-4d1c"
SECRET_PATH = "/srv/price-alchemy/internal/weights.skops"
SECRET_HOST = "mlflow.corp.internal"


def _internal_fragments(home: Path) -> list[str]:
    """What today's load error of an app on ``UNREACHABLE`` with an empty cache is made of."""
    return ["127.0.0.1", str(home), "HTTPConnectionPool", "Errno", "/api/2.0/mlflow", "no version of"]


def _request_id(response: Response) -> str:
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    return request_id


def _logged(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if request_id in r.getMessage()]


@pytest.fixture
def not_ready(make_client: AppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> TestClient:
    """An app whose registry is unreachable and whose cache is empty: no model, a detailed error."""
    caplog.set_level(logging.WARNING, logger="price_alchemy")
    client = make_client(mlflow_tracking_uri=UNREACHABLE)
    last_error = client.app.state.serving.store.last_error  # type: ignore[attr-defined]
    for fragment in _internal_fragments(tmp_path / "home"):  # the server does know the details
        assert fragment in last_error, fragment
    return client


def test_not_ready_bodies_carry_no_internal_text_only_the_request_id(
    not_ready: TestClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    ready = not_ready.get("/health/ready")
    predict = not_ready.post("/v1/predict", json=LISTING)
    batch = not_ready.post("/v1/predict/batch", json={"listings": [LISTING]})

    for response in (ready, predict, batch):
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        for fragment in _internal_fragments(tmp_path / "home"):
            assert fragment not in response.text, (fragment, response.text)
        assert "MlflowException" not in response.text and "ModelNotReadyError" not in response.text
    assert ready.json() == {
        "status": "not ready",
        "detail": NOT_READY_MESSAGE,
        "type": "model_not_ready",
        "request_id": _request_id(ready),
    }
    for response in (predict, batch):
        assert response.json() == {
            "detail": NOT_READY_MESSAGE,
            "type": "model_not_ready",
            "request_id": _request_id(response),
        }
    assert len({_request_id(r) for r in (ready, predict, batch)}) == 3


def test_not_ready_details_are_in_the_log_and_the_event_under_the_request_id(
    not_ready: TestClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    ready = not_ready.get("/health/ready")
    predict = not_ready.post("/v1/predict", json=LISTING)

    for response in (ready, predict):
        (record,) = _logged(caplog, _request_id(response))
        assert record.levelno == logging.WARNING
        for fragment in _internal_fragments(home):
            assert fragment in record.getMessage(), fragment
    (event,) = read_events(home)  # /health/ready writes none: only prediction routes do
    assert event["event"]["id"] == _request_id(predict)
    assert event["error"]["type"] == "ModelNotReadyError"
    assert "127.0.0.1" in event["error"]["message"] and str(home) in event["error"]["message"]


def test_model_route_shows_the_load_error_only_to_a_caller_with_the_key(
    make_client: AppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    open_app = make_client(mlflow_tracking_uri=UNREACHABLE)
    anonymous = open_app.get("/v1/model")
    keyed_app = make_client(mlflow_tracking_uri=UNREACHABLE, api_key=KEY)
    refused = keyed_app.get("/v1/model")
    operator = keyed_app.get("/v1/model", headers={"X-API-Key": KEY})

    assert anonymous.status_code == 503 and anonymous.json() == {
        "detail": NOT_READY_MESSAGE,
        "type": "model_not_ready",
        "request_id": _request_id(anonymous),
        "load_error": None,  # no key configured: every caller is anonymous
    }
    assert refused.status_code == 401 and refused.json() == {
        "detail": "missing or invalid X-API-Key header",
        "type": "unauthorized",
        "request_id": _request_id(refused),
    }
    assert operator.status_code == 503
    assert operator.json()["load_error"] == keyed_app.app.state.serving.store.last_error  # type: ignore[attr-defined]
    assert "127.0.0.1" in operator.json()["load_error"]
    assert keyed_app.get("/health/ready", headers={"X-API-Key": KEY}).json()["detail"] == NOT_READY_MESSAGE
    for response in (anonymous, refused):
        assert "127.0.0.1" not in response.text and str(tmp_path) not in response.text


def test_a_failed_refresh_shows_on_model_info_with_the_key_never_on_health(make_client: AppFactory) -> None:
    make_client()  # fills the local cache from the registry
    client = make_client(mlflow_tracking_uri=UNREACHABLE, api_key=KEY, model_watch_interval_s=0.05)
    store = client.app.state.serving.store  # type: ignore[attr-defined]
    assert store.current is not None and store.last_error is None  # serving the cached copy
    store.start_watcher()  # each poll of the unreachable registry fails
    deadline = time.monotonic() + 30
    while store.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    store.stop_watcher()

    operator = client.get("/v1/model", headers={"X-API-Key": KEY}).json()
    ready = client.get("/health/ready")

    assert operator["source"] == "cache" and "127.0.0.1" in operator["load_error"]
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "model_version": operator["version"],
    }


class _Raising:
    """Stands in for the served pipeline's ``predict``: fails with internal text in the message."""

    def __call__(self, frame: pd.DataFrame) -> Any:
        raise ValueError(f"cannot read {SECRET_PATH} from {SECRET_HOST}")


def test_prediction_failure_is_a_generic_500_with_the_detail_in_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="price_alchemy")
    model = client.app.state.serving.store.current  # type: ignore[attr-defined]
    monkeypatch.setattr(model.pipeline, "predict", _Raising())

    single = client.post("/v1/predict", json=LISTING)
    batch = client.post("/v1/predict/batch", json={"listings": [LISTING, LISTING]})

    for response in (single, batch):
        assert response.status_code == 500
        assert response.json() == {
            "detail": PREDICTION_FAILED_MESSAGE,
            "type": "prediction_failed",
            "request_id": _request_id(response),
        }
        assert "ValueError" not in response.text and SECRET_PATH not in response.text
        (record,) = _logged(caplog, _request_id(response))
        assert record.levelno == logging.ERROR and "ValueError" in record.getMessage()
    traceback = caplog.text  # the batcher logs the model's own exception with its traceback
    assert SECRET_PATH in traceback and SECRET_HOST in traceback
    events = read_events(tmp_path / "home")
    assert [e["event"]["id"] for e in events] == [_request_id(single), _request_id(batch)]
    assert all(e["error"]["type"] == "PredictionError" for e in events)
    assert all("ValueError" in e["error"]["message"] for e in events)


class _ExplodingBatcher:
    async def predict(self, rows: Any, *, explain: bool = False) -> Any:  # MicroBatcher.predict's signature
        raise RuntimeError(f"connection to {SECRET_HOST}:5432 lost while reading {SECRET_PATH}" + "." * 3000)


def test_an_unexpected_exception_is_a_generic_500_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="price_alchemy")
    monkeypatch.setattr(client.app.state.serving, "batcher", _ExplodingBatcher())  # type: ignore[attr-defined]

    response = client.post("/v1/predict", json=LISTING)

    request_id = _request_id(response)
    assert response.status_code == 500
    assert response.json() == {
        "detail": INTERNAL_ERROR_MESSAGE,
        "type": "internal_error",
        "request_id": request_id,
    }
    assert SECRET_HOST not in response.text and "RuntimeError" not in response.text
    (record,) = _logged(caplog, request_id)
    assert SECRET_HOST in record.getMessage() and record.exc_info is not None  # with the traceback
    (event,) = read_events(tmp_path / "home")
    assert event["event"]["id"] == request_id and event["http"]["response"]["status_code"] == 500
    assert event["error"]["type"] == "RuntimeError" and SECRET_PATH in event["error"]["message"]
    assert (
        len(event["error"]["message"]) == ERROR_MESSAGE_CUT < len(record.getMessage())
    )  # the log has it all
    assert (
        client.post("/v1/predict/batch", json={"listings": [LISTING]}).status_code == 500
    )  # still answering


def test_client_errors_carry_type_and_request_id_and_422_stays_as_is(make_client: AppFactory) -> None:
    client = make_client(max_body_bytes=2048)

    missing = client.get("/v1/nothing")
    wrong_method = client.get("/v1/predict")
    bad_length = client.post("/v1/predict", content=b"{}", headers={"Content-Length": "12x"})
    too_big = client.post("/v1/predict/batch", json={"listings": [LISTING] * 20})
    invalid = client.post("/v1/predict", json={**LISTING, "shipping": 7})

    assert missing.json() == {"detail": "Not Found", "type": "not_found", "request_id": _request_id(missing)}
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "method_not_allowed"
    assert bad_length.status_code == 400 and bad_length.json() == {
        "detail": "Content-Length header is not an integer",
        "type": "invalid_content_length",
        "request_id": _request_id(bad_length),
    }
    assert too_big.json() == {
        "detail": "request body exceeds the limit of max_body_bytes=2048 bytes",
        "type": "body_too_large",
        "request_id": _request_id(too_big),
    }
    assert invalid.status_code == 422 and list(invalid.json()) == ["detail"]
    assert invalid.json()["detail"][0]["field"] == "shipping"


def test_openapi_documents_the_error_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    error = components["ErrorBody"]
    assert set(error["required"]) == {"detail", "type", "request_id"}
    assert {"model_not_ready", "prediction_failed", "internal_error"} <= set(
        error["properties"]["type"]["enum"]
    )
    ready_503 = schema["paths"]["/health/ready"]["get"]["responses"]["503"]
    assert ready_503["content"]["application/json"]["schema"]["$ref"].endswith("/NotReadyBody")
    assert "detail" not in components["Health"]["properties"]
    model_503 = schema["paths"]["/v1/model"]["get"]["responses"]["503"]
    assert model_503["content"]["application/json"]["schema"]["$ref"].endswith("/ModelUnavailableBody")
    assert "load_error" in components["ModelInfo"]["properties"]
