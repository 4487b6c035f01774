"""The drift monitor against a real Elasticsearch node and a real (SQLite) MLflow registry.

A tiny champion is trained once per module on synthetic listings; its training run logged the
reference profile. Each test indexes request events shaped like docs/request-events.md into the
node (index templates first, as in production) and runs ``run_monitor`` / ``price-alchemy monitor``:

- traffic from the training generator (another seed) is not drifted; traffic whose condition and
  category mix moved is drifted on those features; too little traffic is insufficient data;
- listings are counted per listing (batch requests hold three), failed requests and requests
  outside the window are ignored;
- one monitoring document per feature plus a summary land in ``price-alchemy-monitoring-YYYY.MM``
  and a rerun for the same window overwrites them; Evidently's HTML report is on disk and the same
  file is an artifact of the MLflow run;
- no champion and an unreachable node are clear domain errors; the CLI exits 3 on drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from drift_traffic import index_events, request_event, shift_listings, traffic
from elasticsearch import Elasticsearch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from price_alchemy.cli import app
from price_alchemy.config import Settings, get_settings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.errors import ModelNotFoundError, PriceAlchemyError
from price_alchemy.monitoring.drift import WINDOW_COLUMNS
from price_alchemy.monitoring.drift_job import run_monitor
from price_alchemy.monitoring.report import BANNER_ID
from price_alchemy.monitoring.templates import ensure_templates
from price_alchemy.params import Params
from price_alchemy.training.stages import run_training

pytestmark = pytest.mark.integration

END = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SERVED = 1200


@dataclass
class Champion:
    settings: Settings
    version: str
    predict: Callable[[pd.DataFrame], np.ndarray]


@pytest.fixture(scope="module")
def champion(
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[..., Settings],
    params: Params,
    synthetic_listings: pd.DataFrame,
    elasticsearch_node: object,
    mlflow_reset: Callable[[], None],
) -> Iterator[Champion]:
    settings = settings_factory(
        tmp_path_factory.mktemp("drift") / "home",
        elasticsearch_url=elasticsearch_node.url,  # type: ignore[attr-defined]
    )
    try:
        trained = run_training(synthetic_listings, settings, params, source="test:drift")
        assert trained.decision.promoted
        model = mlflow.sklearn.load_model(trained.model_uri)
        yield Champion(settings, trained.model_version, model.predict)
    finally:
        mlflow_reset()


def _served(champion: Champion, listings: pd.DataFrame, hours: float = 20.0) -> list[dict]:
    return traffic(
        listings, champion.predict, END - timedelta(hours=hours), END, model_version=champion.version
    )


def _monitoring_docs(client: Elasticsearch, index: str) -> dict[str, dict]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, size=100)["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def test_undrifted_traffic_is_not_drift_and_is_recorded(
    champion: Champion, es_clean: Elasticsearch, params: Params, tmp_path: Path
) -> None:
    ensure_templates(es_clean)
    events = _served(champion, generate_listings(SERVED, seed=21, start_id=10**8))
    # Noise the monitor must ignore: failed requests in the window, drifted traffic before it.
    failures = [request_event(END - timedelta(minutes=m), [], status=422) for m in range(1, 40)]
    old = traffic(
        shift_listings(generate_listings(600, seed=5)),
        champion.predict,
        END - timedelta(hours=40),
        END - timedelta(hours=30),
        model_version=champion.version,
    )
    index_events(es_clean, [*events, *failures, *old])

    report = run_monitor(champion.settings, params, window_hours=24, end=END)  # connects by settings

    result = report.result
    assert not report.drifted and result.status in ("stable", "watch"), report.summary()
    assert all(f.value < params.monitoring.psi.drift for f in result.features), report.summary()
    assert result.listings == SERVED and result.requests == len(events) < SERVED  # batches of three
    assert result.model_version == champion.version
    assert result.model_versions_seen == {champion.version: SERVED}

    docs = _monitoring_docs(es_clean, "price-alchemy-monitoring-2025.06")
    assert report.index == "price-alchemy-monitoring-2025.06" and set(docs) == set(report.document_ids)
    features = {d["drift"]["feature"]: d for d in docs.values() if d["drift"]["type"] == "feature"}
    assert set(features) == set(WINDOW_COLUMNS)
    for name, doc in features.items():
        assert doc["drift"]["value"] == pytest.approx(result.feature(name).value)
        assert doc["drift"]["drifted"] is False and doc["@timestamp"].startswith("2025-06-02T12:00:00")
        assert doc["price_alchemy"]["model"]["version"] == champion.version
    (summary,) = [d for d in docs.values() if d["drift"]["type"] == "summary"]
    assert summary["drift"]["drifted"] is False and summary["drift"]["listings"] == SERVED
    assert summary["monitor"]["report_path"] == str(report.report_path)
    assert summary["monitor"]["requests"] == len(events)

    html = report.report_path.read_text()
    assert report.report_path.parent == champion.settings.reports_dir / "drift"
    # Evidently's page (its PSI per feature) under the project's verdict banner.
    assert BANNER_ID in html and "window.drawDashboard(" in html
    assert html.count('"stattest_name": "PSI"') == len(WINDOW_COLUMNS)
    client = MlflowClient(tracking_uri=champion.settings.tracking_uri)
    run = client.get_run(report.mlflow_run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "price-alchemy-monitoring"
    assert run.data.metrics["psi_price"] == pytest.approx(result.feature("price").value)
    assert run.data.tags["drift.status"] == result.status
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift")} == {
        f"drift/{report.report_path.name}",
        "drift/result.json",
    }
    logged = client.download_artifacts(run.info.run_id, f"drift/{report.report_path.name}", str(tmp_path))
    assert Path(logged).read_text() == html


def test_drifted_traffic_is_drift_on_the_shifted_features_and_reruns_overwrite(
    champion: Champion, es_clean: Elasticsearch, params: Params
) -> None:
    ensure_templates(es_clean)
    index_events(es_clean, _served(champion, shift_listings(generate_listings(SERVED, seed=22))))

    first = run_monitor(champion.settings, params, window_hours=24, end=END, client=es_clean)
    again = run_monitor(champion.settings, params, window_hours=24, end=END, client=es_clean)

    assert first.drifted and first.result.status == "drifted", first.summary()
    assert {"item_condition_id", "top_category"} <= set(first.result.drifted_features)
    assert first.result.feature("shipping").value < first.result.feature("top_category").value
    docs = _monitoring_docs(es_clean, first.index)
    assert len(docs) == len(WINDOW_COLUMNS) + 1, "a rerun for the same window must overwrite"
    assert again.document_ids == first.document_ids
    drifted = {
        d["drift"]["feature"] for d in docs.values() if d["drift"].get("drifted") and "feature" in d["drift"]
    }
    assert drifted == set(first.result.drifted_features)


def test_a_quiet_window_is_insufficient_data(
    champion: Champion, es_clean: Elasticsearch, params: Params
) -> None:
    ensure_templates(es_clean)
    few = shift_listings(generate_listings(params.monitoring.min_listings // 3, seed=23))
    index_events(es_clean, _served(champion, few, hours=2))

    report = run_monitor(champion.settings, params, window_hours=24, end=END, client=es_clean)

    assert report.result.status == "insufficient_data" and not report.drifted
    assert 0 < report.result.listings < params.monitoring.min_listings


def test_cli_monitor_exits_3_on_drift(
    champion: Champion, es_clean: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_templates(es_clean)
    now = datetime.now(UTC)
    events = traffic(
        shift_listings(generate_listings(SERVED, seed=24)),
        champion.predict,
        now - timedelta(hours=3),
        now - timedelta(minutes=1),
        model_version=champion.version,
    )
    index_events(es_clean, events)
    monkeypatch.setenv("PRICE_ALCHEMY_HOME", str(champion.settings.home))
    monkeypatch.setenv("PRICE_ALCHEMY_ELASTICSEARCH_URL", str(champion.settings.elasticsearch_url))
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["monitor", "--window-hours", "6"])

    assert result.exit_code == 3, result.output
    assert "DRIFTED" in result.output and "top_category" in result.output


def test_no_champion_is_a_domain_error(tmp_path: Path, params: Params) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home", elasticsearch_url="http://127.0.0.1:9")  # type: ignore[call-arg]

    with pytest.raises(ModelNotFoundError, match="champion"):
        run_monitor(settings, params, end=END)


def test_unreachable_elasticsearch_is_a_domain_error(champion: Champion, params: Params) -> None:
    settings = champion.settings.model_copy(update={"elasticsearch_url": "http://127.0.0.1:9"})

    with pytest.raises(PriceAlchemyError, match=r"(?i)elasticsearch"):
        run_monitor(settings, params, end=END)
