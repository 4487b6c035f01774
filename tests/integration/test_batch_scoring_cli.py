"""``price-alchemy predict`` on a damaged file and ``price-alchemy score``, end to end on an isolated home.

A small model is trained once per module through the CLI; then:

- ``predict`` prices every listing that has an id: the output is exactly the Kaggle submission
  format (``test_id,price``, one row per id, every id), the flags go to a report beside it, a
  summary to stderr; content-free listings get the fallback price; ``--strict`` leaves bad rows out;
- the scorer's worker pool gives the same prices as the model in this process;
- ``score`` prices the warehouse into ``predictions`` with a progress bar, and a rerun prices nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from damaged_listings import Damage, write_damaged_file
from typer.testing import CliRunner, Result

from price_alchemy import scorer as scorer_module
from price_alchemy.cli import app
from price_alchemy.config import Settings, get_settings
from price_alchemy.data.files import write_listings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.data.warehouse import open_warehouse
from price_alchemy.inference import open_model
from price_alchemy.schema import FEATURE_COLUMNS

pytestmark = pytest.mark.integration

SMALL_PARAMS = """\
tuning:
  families: [ridge]
features:
  name_max_features: 5000
  text_max_features: 10000
  char_max_features: 5000
"""
N = 300


def _flat(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Trained:
    root: Path
    home: Path
    run: Callable[..., Result]
    damage: Damage


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_reset: Callable[[], None]) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("scoring-cli")
    home = root / "home"
    (root / "params.yaml").write_text(SMALL_PARAMS, encoding="utf-8")
    runner = CliRunner()
    env = {
        "PRICE_ALCHEMY_HOME": str(home),
        "PRICE_ALCHEMY_PARAMS_FILE": str(root / "params.yaml"),
        "COLUMNS": "250",
        "MLFLOW_TRACKING_URI": None,
    }

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return runner.invoke(app, list(args), env=env)
        finally:
            get_settings.cache_clear()

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        try:
            write_listings(generate_listings(1500, seed=7), root / "listings.tsv")
            assert run("ingest", "--input", "listings.tsv").exit_code == 0
            result = run("train", "--max-evals", "2", "--timeout", "20")
            assert result.exit_code == 0, result.output
            yield Trained(root, home, run, write_damaged_file(root / "test.tsv", n=N, seed=5))
        finally:
            mlflow_reset()


def test_predict_prices_every_listing_with_an_id_in_kaggle_format(trained: Trained) -> None:
    result = trained.run(
        "predict", "--input", str(trained.damage.path), "--output", str(trained.root / "sub.csv")
    )
    assert result.exit_code == 0, result.output + repr(result.exception)

    text = (trained.root / "sub.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "test_id,price"
    submission = pd.read_csv(trained.root / "sub.csv")
    assert list(submission.columns) == ["test_id", "price"]
    assert sorted(submission["test_id"]) == trained.damage.ids  # every id, once
    assert submission["test_id"].is_unique and (submission["price"] > 0).all()
    # content-free listings share the fallback price; the others are the model's own
    prices = submission.set_index("test_id")["price"]
    fallback = prices.loc[sorted(trained.damage.fallback)]
    assert fallback.nunique() == 1
    settings = Settings(_env_file=None, home=trained.home)
    with open_model(settings) as model:
        assert fallback.iloc[0] == model.fallback_price
    assert prices.drop(fallback.index).nunique() > N // 2

    flags = pd.read_csv(trained.root / "sub.flags.csv", dtype={"test_id": "Int64"})
    assert list(flags.columns) == ["test_id", "line", "flag", "fields", "reason"]
    imputed = flags[flags["flag"] == "imputed"].set_index("test_id")
    assert set(imputed.index) == set(trained.damage.imputed)
    assert imputed.loc[10, "fields"] == "shipping" and imputed.loc[10, "line"] == 12
    assert "shipping missing, taken as unknown" in imputed.loc[10, "reason"]
    assert set(flags.loc[flags["flag"] == "fallback", "test_id"]) == trained.damage.fallback
    assert (flags["flag"] == "skipped").sum() == trained.damage.unattributable
    assert flags.loc[flags["flag"] == "skipped", "test_id"].isna().all()
    assert flags.loc[flags["flag"] == "duplicate", "test_id"].tolist() == [5]

    errors = _flat(result.stderr)
    records = N + trained.damage.unattributable + trained.damage.duplicates
    assert f"priced {N} of {records} records" in errors
    assert f"fallback price (no usable content): {len(trained.damage.fallback)}" in errors
    assert "left out: 3 without an id, 1 duplicate ids (first kept)" in errors
    assert "sub.flags.csv" in errors


def test_predict_strict_leaves_damaged_rows_out(trained: Trained) -> None:
    result = trained.run(
        "predict",
        "--strict",
        "--input",
        str(trained.damage.path),
        "--output",
        str(trained.root / "strict.csv"),
    )
    assert result.exit_code == 0, result.output
    strict = pd.read_csv(trained.root / "strict.csv")
    missing = set(trained.damage.ids) - set(strict["test_id"])
    assert {10, 20, 40, 50, 60, 90} <= missing  # what the default prices, --strict leaves out
    assert "rejected line 12: shipping missing" in _flat(result.stderr)
    assert not (trained.root / "strict.flags.csv").exists()


def test_the_worker_pool_gives_the_prices_of_the_model_itself(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = generate_listings(1200, seed=21, with_price=False)
    settings = Settings(_env_file=None, home=trained.home)
    monkeypatch.setattr(scorer_module, "SCORE_ROWS", 100)  # 12 pieces: the pool path
    with open_model(settings) as model, scorer_module.Scorer(model, workers=2) as scorer:
        pooled = list(
            scorer.map([("a", frame.iloc[:700]), ("b", frame.iloc[700:700]), ("c", frame.iloc[700:])])
        )
        assert scorer._pool is not None  # the pieces went to the workers
        local = scorer.predict(frame[list(FEATURE_COLUMNS)])
    assert [k for k, _ in pooled] == ["a", "b", "c"] and [len(p) for _, p in pooled] == [700, 0, 500]
    np.testing.assert_allclose(np.concatenate([p for _, p in pooled]), local, rtol=1e-12)


def test_score_prices_the_warehouse_and_a_rerun_prices_nothing(trained: Trained) -> None:
    first = trained.run("score")
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert "scored 1,500 listings in 1 batches with price-alchemy v1 (warehouse)" in _flat(first.stdout)
    settings = Settings(_env_file=None, home=trained.home)
    with open_warehouse(settings) as warehouse:
        stored = warehouse.read_predictions()
    assert len(stored) == 1500 and set(stored["model_version"]) == {"1"}
    assert stored["price_low"].notna().all() and (stored["price_low"] < stored["price_high"]).all()

    again = trained.run("score")
    assert again.exit_code == 0 and "nothing to price" in _flat(again.stdout)
    both = trained.run("score", "--query", "SELECT 1 AS x", "--input", str(trained.damage.path))
    assert both.exit_code == 2 and "exclude each other" in _flat(both.stderr)
    wrong = trained.run("score", "--query", "SELECT listing_id FROM {listings}")
    assert wrong.exit_code == 1 and "must return listing_id and name" in _flat(wrong.stderr)
