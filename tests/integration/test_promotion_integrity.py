"""Promotion compares like with like, one decision at a time (real registry, real processes).

- the champion is scored again on the challenger's test rows, never judged by its stored score;
- promotions are serialized across processes by the registry's lease: a promotion that starts
  while another holds the lease waits, then compares with the champion the other one left;
- a training run given a ``query`` pins the rows it selected in its first task: a batch ingested
  between the tasks changes nothing for the fit or the promotion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from price_alchemy import mlflow_store, tasks
from price_alchemy.config import Settings
from price_alchemy.errors import PromotionLockError
from price_alchemy.names import CHAMPION, PROMOTION_LOCK_SUFFIX, SELECTION_ARTIFACT
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.split import Split
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.stages import fit_stage, prepare_split, promote_stage, register_stage, tune_stage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _register(settings: Settings, params: Params, listings: pd.DataFrame) -> str:
    """Train on ``listings`` and register the model without deciding a promotion."""
    mlflow_store.configure(settings)
    split = prepare_split(listings, params)
    run_id, outcome = tune_stage(split, settings, params, source="test:promotion")
    return register_stage(settings, fit_stage(split, settings, params, run_id, outcome=outcome))


def _score(settings: Settings, version: str, split: Split) -> float:
    model = mlflow_store.load_version(settings, mlflow_store.version_info(settings, version))
    return rmsle(split.test[PRICE].to_numpy(), model.predict(split.test[list(FEATURE_COLUMNS)]))


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@pytest.fixture
def weak_and_strong(settings: Settings, params: Params, listings: pd.DataFrame) -> tuple[str, str, Split]:
    """v1 trained on 300 rows (champion), v2 on all 1,500; the shared evaluation split."""
    weak = _register(settings, params, listings.head(300))
    strong = _register(settings, params, listings)
    _client(settings).set_registered_model_alias(settings.model_name, CHAMPION, weak)
    return weak, strong, prepare_split(listings, params)


def test_the_champion_is_scored_again_not_judged_by_its_stored_score(
    settings: Settings, params: Params, weak_and_strong: tuple[str, str, Split]
) -> None:
    weak, strong, split = weak_and_strong
    _client(settings).set_model_version_tag(settings.model_name, weak, "test_rmsle", "0.0001")  # a boast
    fresh = _score(settings, weak, split)
    decision = promote_stage(split, settings, params, strong)
    assert decision.champion_version == weak
    assert decision.champion_rmsle == pytest.approx(fresh)
    assert decision.promoted  # the strong model beats the weak one's real score, not its boast


PROMOTE = textwrap.dedent(
    """
    import json, sys
    from price_alchemy.config import Settings
    from price_alchemy.data.synthetic import generate_listings
    from price_alchemy.params import load_params
    from price_alchemy.training.stages import prepare_split, promote_stage

    home, version = sys.argv[1], sys.argv[2]
    settings = Settings(_env_file=None, home=home, warehouse="duckdb")
    params = load_params()
    split = prepare_split(generate_listings(1500, seed=7), params)
    decision = promote_stage(split, settings, params, version)
    print(json.dumps({"promoted": decision.promoted, "reason": decision.reason}))
    """
)


def _promote_in_another_process(settings: Settings, version: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PRICE_ALCHEMY_"))}
    return subprocess.Popen(
        [sys.executable, "-c", PROMOTE, str(settings.home), version],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_promotion_waits_for_the_lease_and_compares_with_the_champion_left_by_the_other(
    settings: Settings, params: Params, listings: pd.DataFrame, weak_and_strong: tuple[str, str, Split]
) -> None:
    weak, strong, split = weak_and_strong
    assert len(listings) == 1500  # the other process rebuilds the same split from the same seed
    weak_score, strong_score = _score(settings, weak, split), _score(settings, strong, split)
    assert strong_score < weak_score - 0.01
    # a third version that beats the weak champion but not the strong one
    middle = _register(settings, params, listings.head(800))
    between = (weak_score + strong_score) / 2
    _client(settings).set_model_version_tag(settings.model_name, middle, "test_rmsle", repr(between))

    with mlflow_store.promotion_lock(settings):  # this process is deciding a promotion...
        other = _promote_in_another_process(settings, middle)
        time.sleep(8)  # ...long enough for the other process to start, load and reach the lease
        assert other.poll() is None, other.communicate()
        assert mlflow_store.require_alias(settings).version == weak  # it has not moved the alias
        _client(settings).set_registered_model_alias(settings.model_name, CHAMPION, strong)  # our decision
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    decision = json.loads(out.strip().splitlines()[-1])
    assert decision["promoted"] is False
    assert f"does not beat champion v{strong}" in decision["reason"]
    assert mlflow_store.require_alias(settings).version == strong
    with pytest.raises(mlflow_store.MlflowException):
        _client(settings).get_registered_model(settings.model_name + PROMOTION_LOCK_SUFFIX)


def test_a_held_lease_times_out_with_a_clear_error_and_an_expired_one_is_broken(settings: Settings) -> None:
    mlflow_store.configure(settings)
    with (
        mlflow_store.promotion_lock(settings),
        pytest.raises(PromotionLockError, match="holds the lease; waited 1s"),
        mlflow_store.promotion_lock(settings, wait_s=1),
    ):
        pass
    # a holder that died at once (lease of 0 s) is broken and taken over
    with (
        mlflow_store.promotion_lock(settings, lease_s=0.0),
        mlflow_store.promotion_lock(settings, wait_s=5) as check,
    ):
        check()
    with pytest.raises(mlflow_store.MlflowException):
        _client(settings).get_registered_model(settings.model_name + PROMOTION_LOCK_SUFFIX)


def test_a_query_run_keeps_the_rows_its_first_task_selected(settings: Settings, params: Params) -> None:
    def ingest(day: str, rows: int) -> None:
        batch = tasks.extract_batch(day, rows=rows, settings=settings)
        tasks.validate_and_load(batch["path"], batch_id=batch["batch_id"], settings=settings)

    ingest("2025-06-01", 1200)
    query = "SELECT * FROM {listings} WHERE shipping IN (0, 1)"
    tuned = tasks.tune(query=query, max_evals=2, timeout=30, settings=settings)
    assert tuned["batch_ids"] == ["synthetic_20250601"]
    pinned = mlflow_store.download(settings, f"runs:/{tuned['run_id']}/{SELECTION_ARTIFACT}", settings.home)
    assert len(pd.read_parquet(pinned)) == tuned["rows"] == 1200

    ingest("2025-06-02", 900)  # lands between the tasks: the query would now return 2,100 rows
    evaluated = tasks.fit_and_evaluate(
        tuned["run_id"], query=tuned["query"], batch_ids=tuned["batch_ids"], settings=settings
    )
    assert evaluated["rows"] == 1200
    registered = tasks.register(evaluated, settings=settings)
    decision = tasks.promote(
        registered["version"], query=tuned["query"], batch_ids=tuned["batch_ids"], settings=settings
    )
    assert decision["promoted"] and decision["rows"] == 1200  # promotion scored on the same pinned rows
