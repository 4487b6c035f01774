"""The training job against a real (embedded SQLite) MLflow store and registry.

Three trainings share one store, in order: a weak model on a small sample (no champion yet, so it
is promoted), a model on the full sample (clearly better: promoted), and the same training again
(identical score: not better by the margin, so the champion stays).

Lineage: each run lists its training, validation and test listings as MLflow datasets (row
counts, source, a content digest), the model version names them and its logged model's test
metrics point to the test dataset; a staged run on warehouse batches names those batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.data.warehouse import open_warehouse
from price_alchemy.errors import TrainingError
from price_alchemy.names import CHALLENGER, CHAMPION
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.tasks import training_listings
from price_alchemy.training.stages import (
    TrainingResult,
    fit_stage,
    prepare_split,
    run_training,
    tune_stage,
)

pytestmark = pytest.mark.integration

WEAK_ROWS = 300
CONTEXTS = {"training": "train", "validation": "valid", "test": "test"}
EVALUATION_PLOTS = {
    "predicted_vs_actual.png",
    "residuals_by_category.png",
    "error_by_price_band.png",
    "price_range_by_segment.png",
}


@dataclass
class Trained:
    settings: Settings
    params: Params
    weak: TrainingResult
    full: TrainingResult
    again: TrainingResult

    def client(self) -> MlflowClient:
        uri = self.settings.tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def version(self, result: TrainingResult) -> ModelVersion:
        return self.client().get_model_version(self.settings.model_name, result.model_version)

    def alias(self, alias: str) -> str:
        return str(self.client().get_model_version_by_alias(self.settings.model_name, alias).version)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[[Path], Settings],
    params: Params,
    synthetic_listings: pd.DataFrame,
    mlflow_reset: Callable[[], None],
) -> Iterator[Trained]:
    settings = settings_factory(tmp_path_factory.mktemp("training") / "home")
    try:
        weak = run_training(synthetic_listings.head(WEAK_ROWS), settings, params, source="test:weak")
        full = run_training(synthetic_listings, settings, params, source="test:full")
        again = run_training(synthetic_listings, settings, params, source="test:again")
        yield Trained(settings, params, weak, full, again)
    finally:
        mlflow_reset()


def test_versions_are_registered_in_order_with_the_challenger_alias_on_the_newest(trained: Trained) -> None:
    assert [trained.weak.model_version, trained.full.model_version, trained.again.model_version] == [
        "1",
        "2",
        "3",
    ]
    assert trained.alias(CHALLENGER) == "3"
    for result in (trained.weak, trained.full, trained.again):
        version = trained.version(result)
        assert version.run_id == result.run_id
        assert version.tags["run_id"] == result.run_id
        assert float(version.tags["test_rmsle"]) == pytest.approx(result.test_metrics["rmsle"], abs=1e-6)


def test_first_model_is_champion_because_none_existed(trained: Trained) -> None:
    decision = trained.weak.decision

    assert decision.promoted is True
    assert decision.reason == "no champion existed"
    assert decision.champion_version is None and decision.champion_rmsle is None
    tags = trained.version(trained.weak).tags
    assert tags["promotion.promoted"] == "True"
    assert tags["promotion.reason"] == "no champion existed"
    assert tags["promotion.champion_version"] == ""


def test_a_clearly_better_model_becomes_champion(trained: Trained) -> None:
    decision = trained.full.decision

    assert decision.champion_version == "1"
    assert decision.champion_rmsle is not None
    # The old champion is scored on the new test rows: a weak model is clearly worse there.
    assert decision.challenger_rmsle < decision.champion_rmsle - decision.margin
    assert decision.promoted is True
    assert "beats champion v1" in decision.reason
    assert str(trained.version(trained.full).description).startswith("PROMOTED to champion: challenger RMSLE")


def test_an_equal_model_does_not_displace_the_champion(trained: Trained) -> None:
    decision = trained.again.decision

    assert trained.alias(CHAMPION) == "2"
    assert decision.champion_version == "2"
    # Same data, same seed: the same model; the champion rescored on the same test rows matches
    # the score recorded when it was trained (the challenger's comes from the 6-decimal tag).
    assert decision.challenger_rmsle == pytest.approx(trained.full.test_metrics["rmsle"], abs=1e-6)
    assert decision.champion_rmsle == pytest.approx(trained.full.test_metrics["rmsle"], abs=1e-9)
    assert decision.promoted is False
    assert "does not beat champion v2" in decision.reason
    description = trained.version(trained.again).description
    assert description == "Not promoted: " + decision.reason


@pytest.mark.parametrize("which", ["weak", "full", "again"])
def test_recorded_decision_agrees_with_scores_and_aliases(trained: Trained, which: str) -> None:
    """Tags on the version and on the run say what was decided; the rule holds for the recorded scores."""
    result: TrainingResult = getattr(trained, which)
    decision = result.decision
    tags = trained.version(result).tags
    run_tags = trained.client().get_run(result.run_id).data.tags

    for key, value in decision.as_tags().items():
        assert tags[key] == value
        assert run_tags[key] == value
    assert float(tags["promotion.challenger_rmsle"]) == pytest.approx(result.test_metrics["rmsle"], abs=1e-6)
    assert float(tags["promotion.margin"]) == trained.params.promotion.margin
    if decision.champion_rmsle is not None:
        expected = decision.challenger_rmsle <= decision.champion_rmsle - decision.margin
        assert decision.promoted is expected
    description = str(trained.version(result).description)
    assert description.startswith("PROMOTED to champion: " if decision.promoted else "Not promoted: ")
    artifact = trained.client().download_artifacts(result.run_id, "promotion.json")
    assert pd.read_json(artifact, typ="series")["promoted"] == decision.promoted


def test_champion_alias_follows_the_promotions(trained: Trained) -> None:
    promoted = [r.model_version for r in (trained.weak, trained.full, trained.again) if r.decision.promoted]

    assert promoted == ["1", "2"]
    assert trained.alias(CHAMPION) == promoted[-1]


def test_model_beats_the_rules_baseline(trained: Trained) -> None:
    metrics, baseline = trained.full.test_metrics, trained.full.baseline_metrics

    assert math.isfinite(metrics["rmsle"]) and 0.2 < metrics["rmsle"] < 0.8
    assert metrics["rmsle"] < baseline["rmsle"] - 0.05
    assert metrics["r2"] > baseline["r2"]
    run = trained.client().get_run(trained.full.run_id)
    assert run.data.metrics["test_rmsle"] == pytest.approx(metrics["rmsle"])
    assert run.data.metrics["baseline_test_rmsle"] == pytest.approx(baseline["rmsle"])
    assert run.data.params["tuning.max_evals"] == "3"
    assert run.data.params["data.input_rows"] == "1500"
    assert int(run.data.params["data.test"]) == trained.full.sizes["test"] > 100
    assert run.data.tags["source"] == "test:full"


def test_each_trial_is_a_nested_run_under_the_parent(trained: Trained) -> None:
    client = trained.client()
    parent = client.get_run(trained.full.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained.full.run_id}'"
    )

    assert trained.full.n_trials == trained.params.tuning.max_evals == 3
    assert len(children) == 3
    assert sorted(r.info.run_name for r in children) == [
        "trial-001-ridge",
        "trial-002-ridge",
        "trial-003-ridge",
    ]
    scores = [r.data.metrics["valid_rmsle"] for r in children]
    assert all(0.2 < s < 1.0 for s in scores)
    assert parent.data.metrics["valid_rmsle_ridge"] == pytest.approx(min(scores))
    assert all(r.data.params["family"] == "ridge" for r in children)


def test_run_holds_the_evaluation_plots_and_the_model(trained: Trained) -> None:
    client = trained.client()
    run_id = trained.full.run_id

    evaluation = {Path(a.path).name: a for a in client.list_artifacts(run_id, "evaluation")}
    assert set(evaluation) == EVALUATION_PLOTS | {"price_range_by_segment.csv"}
    search = {Path(a.path).name: a for a in client.list_artifacts(run_id, "search")}
    assert set(search) >= {"tuning_history.png", "trials.csv", "outcome.json"}
    for path in [f"evaluation/{name}" for name in EVALUATION_PLOTS] + ["search/tuning_history.png"]:
        local = Path(client.download_artifacts(run_id, path))
        assert local.stat().st_size > 5_000
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trials = pd.read_csv(client.download_artifacts(run_id, "search/trials.csv"))
    assert len(trials) == 3 and set(trials["family"]) == {"ridge"}
    profile = json.loads(Path(client.download_artifacts(run_id, "reference/profile.json")).read_text())
    assert profile["rows"] == trained.full.sizes["train"]
    # 150 test rows: below the packaged 400, one width for every listing (the API suite serves the other).
    assert profile["price_interval"]["scale"] is None
    ranges = pd.read_csv(client.download_artifacts(run_id, "evaluation/price_range_by_segment.csv"))
    assert ranges["segment"].iloc[0] == "all" and ranges["rows"].iloc[0] == trained.full.sizes["test"]
    quintiles = ranges[ranges["segment"].str.startswith("price quintile")]
    assert len(quintiles) == 5 and quintiles["rows"].sum() == trained.full.sizes["test"]
    metrics = client.get_run(run_id).data.metrics
    for method in ("constant", "adaptive"):
        assert 0.6 < ranges[f"coverage_{method}"].iloc[0] < 0.95
        assert (ranges[f"ratio_{method}"] > 1).all()
        assert metrics[f"test_range_coverage_{method}"] == pytest.approx(ranges[f"coverage_{method}"].iloc[0])

    mlflow.set_tracking_uri(trained.settings.tracking_uri)
    model = mlflow.sklearn.load_model(trained.full.model_uri)
    sample = generate_listings(20, seed=99, start_id=10**7)
    prices = model.predict(sample[list(FEATURE_COLUMNS)])
    assert prices.shape == (20,)
    assert np.all(np.isfinite(prices)) and np.all(prices > 0)
    champion = mlflow.sklearn.load_model(f"models:/{trained.settings.model_name}@{CHAMPION}")
    np.testing.assert_allclose(champion.predict(sample[list(FEATURE_COLUMNS)]), prices)


def test_too_few_priced_rows_is_a_training_error(settings: Settings, params: Params) -> None:
    few = generate_listings(40, seed=1)

    with pytest.raises(TrainingError, match=r"not enough priced listings to train: \{'train': \d+"):
        run_training(few, settings, params)

    assert not (settings.home / "mlflow.db").exists()  # refused before any run was started


def test_zero_prices_do_not_count_as_training_rows(settings: Settings, params: Params) -> None:
    unpriced = generate_listings(400, seed=1).assign(price=0.0)

    with pytest.raises(TrainingError, match=r"'train': 0, 'valid': 0, 'test': 0"):
        run_training(unpriced, settings, params)


def _inputs(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The run's dataset inputs by context (``mlflow.data.context``), each logged once."""
    inputs = client.get_run(run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert len(by_context) == len(inputs), "a dataset was logged twice (tune and fit stages)"
    return by_context


@pytest.mark.parametrize(("which", "source"), [("weak", "test:weak"), ("full", "test:full")])
def test_the_run_lists_its_three_datasets_with_rows_source_and_digest(
    trained: Trained, synthetic_listings: pd.DataFrame, which: str, source: str
) -> None:
    result: TrainingResult = getattr(trained, which)
    rows = WEAK_ROWS if which == "weak" else len(synthetic_listings)
    split = prepare_split(synthetic_listings.head(rows), trained.params)

    datasets = _inputs(trained.client(), result.run_id)

    assert set(datasets) == set(CONTEXTS)
    for context, part in CONTEXTS.items():
        dataset = datasets[context]
        assert dataset.name == f"listings-{context}"
        assert json.loads(dataset.profile)["num_rows"] == result.sizes[part] > 0
        assert json.loads(dataset.source)["source"] == source
        assert dataset.digest == mlflow_store.dataset_digest(getattr(split, part))


def test_the_digest_is_the_content_whatever_the_row_order(trained: Trained) -> None:
    full, again = (_inputs(trained.client(), r.run_id) for r in (trained.full, trained.again))
    weak = _inputs(trained.client(), trained.weak.run_id)
    assert {c: d.digest for c, d in full.items()} == {c: d.digest for c, d in again.items()}
    assert all(weak[c].digest != full[c].digest for c in CONTEXTS)
    frame = generate_listings(50, seed=3)
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert mlflow_store.dataset_digest(shuffled) == mlflow_store.dataset_digest(frame)
    changed = frame.assign(price=frame["price"].where(frame.index != 7, frame["price"] + 1))
    assert mlflow_store.dataset_digest(changed) != mlflow_store.dataset_digest(frame)


def test_the_model_version_points_to_its_datasets(trained: Trained) -> None:
    client = trained.client()
    version = trained.version(trained.full)
    datasets = _inputs(client, trained.full.run_id)

    for context, part in CONTEXTS.items():
        named = version.tags[f"price_alchemy.dataset.{context}"]
        assert (
            f"listings-{context} ({trained.full.sizes[part]} rows, digest {datasets[context].digest}" in named
        )
        assert named.endswith("from test:full")
    # MLflow's own link: the version's source is the logged model, whose test metrics name the dataset.
    assert version.source.startswith("models:/m-")
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    linked = {m.key: m for m in logged.metrics if m.dataset_name}
    assert linked["test_rmsle"].dataset_name == "listings-test"
    assert linked["test_rmsle"].dataset_digest == datasets["test"].digest
    assert linked["test_rmsle"].value == pytest.approx(trained.full.test_metrics["rmsle"])
    assert set(linked) == {f"test_{k}" for k in trained.full.test_metrics}
    history = client.get_metric_history(trained.full.run_id, "test_rmsle")
    assert [m.value for m in history] == [pytest.approx(trained.full.test_metrics["rmsle"])]


def test_a_staged_run_on_warehouse_batches_names_the_batches(
    settings: Settings, params: Params, synthetic_listings: pd.DataFrame
) -> None:
    """As the training DAG does: tune and fit in separate steps, fit told nothing about the source."""
    batches = {"2025-06-01": synthetic_listings.iloc[:700], "2025-06-02": synthetic_listings.iloc[700:]}
    with open_warehouse(settings) as warehouse:
        for batch_id, frame in batches.items():
            warehouse.load_batch(frame.reset_index(drop=True), batch_id)
    listings, source = training_listings(settings, params, batch_ids=list(batches))
    split = prepare_split(listings, params)
    mlflow_store.configure(settings)

    run_id, _ = tune_stage(split, settings, params, source=source)
    fit_stage(split, settings, params, run_id)  # outcome and source read back from the run

    refs = {r.context: r for r in mlflow_store.run_datasets(settings, run_id)}
    assert source == "warehouse:duckdb:2 batches" and set(refs) == set(CONTEXTS)
    for context, part in CONTEXTS.items():
        ref = refs[context]
        assert ref.rows == len(getattr(split, part)) and ref.source == source
        assert ref.batches == 2 and ref.batch_ids == sorted(batches)
