"""The ``price-alchemy`` command line end to end on an isolated home (DuckDB + SQLite MLflow).

The main workflow (generate -> ingest -> train -> predict -> quarantine) runs once per module
in-process with Typer's ``CliRunner``; the no-model case runs the installed console script as a
real subprocess, so the exit code and stderr are the ones a shell sees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from price_alchemy.cli import app
from price_alchemy.config import get_settings
from price_alchemy.data.files import write_listings
from price_alchemy.data.synthetic import generate_listings

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "price-alchemy"
TRAIN_ROWS = 1500
NEW_ROWS = 25
NEW_START_ID = 5_000_000
# Both families, but trees and vocabularies small enough to train in seconds. Omitted keys keep
# the packaged defaults (this also exercises PRICE_ALCHEMY_PARAMS_FILE).
SMALL_PARAMS = """\
tuning:
  families: [ridge, lightgbm]
  lightgbm:
    n_estimators: [20, 40]
    num_leaves: [8, 24]
    max_columns: 1000
features:
  name_max_features: 5000
  text_max_features: 10000
  char_max_features: 5000
"""
BAD_TRAIN_LINES = (
    "9000001\tJunk condition\tabc\tBeauty/Makeup/Lips\t\t12\t0\tdesc\n",  # line 1502
    "9000002\tBad condition\t7\tBeauty/Makeup/Lips\tMAC\t12\t0\tdesc\n",
)
BAD_NEW_LINES = (
    "abc\tJunk id\t1\tWomen/Jewelry/Rings\t\t1\tdesc\n",  # line NEW_ROWS + 2 = 27
    "5999999\tBad condition\t9\tWomen/Jewelry/Rings\t\t1\tdesc\n",  # line 28
)


def _flat(text: str) -> str:
    """Output with Rich's line wrapping undone (whitespace runs become one space)."""
    return " ".join(text.split())


@dataclass
class Workflow:
    root: Path
    home: Path
    results: dict[str, Result]
    run: Callable[..., Result]


def _environment(home: Path, params_file: Path | None = None) -> dict[str, str | None]:
    """Variables for one CLI call: this home, wide output, no MLflow state from earlier calls."""
    env: dict[str, str | None] = {
        "PRICE_ALCHEMY_HOME": str(home),
        "PRICE_ALCHEMY_PARAMS_FILE": str(params_file) if params_file else None,
        "COLUMNS": "250",
    }
    env.update(dict.fromkeys(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")))
    return env


def _runner(home: Path, params_file: Path | None = None) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return runner.invoke(app, list(args), env=_environment(home, params_file))
        finally:
            get_settings.cache_clear()

    return run


def _append(path: Path, lines: tuple[str, ...]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(lines)


@pytest.fixture(scope="module")
def workflow(
    tmp_path_factory: pytest.TempPathFactory, mlflow_reset: Callable[[], None]
) -> Iterator[Workflow]:
    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    params_file = root / "params.yaml"
    params_file.write_text(SMALL_PARAMS, encoding="utf-8")
    run = _runner(home, params_file)
    results: dict[str, Result] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        try:
            results["generate"] = run(
                "generate", "--output", "listings.tsv", "--rows", str(TRAIN_ROWS), "--seed", "7"
            )
            _append(root / "listings.tsv", BAD_TRAIN_LINES)
            results["ingest"] = run("ingest", "--input", "listings.tsv")
            results["train"] = run("train", "--max-evals", "3", "--timeout", "20")
            new = [
                "generate", "--output", "new.tsv", "--rows", str(NEW_ROWS),
                "--seed", "11", "--start-id", str(NEW_START_ID), "--test-format",
            ]  # fmt: skip
            results["generate_new"] = run(*new)
            _append(root / "new.tsv", BAD_NEW_LINES)
            # --strict: today's rules, a bad row left out (tests/integration/test_batch_scoring_cli.py
            # covers the default, which prices every listing with an id)
            results["predict"] = run(
                "predict", "--strict", "--input", "new.tsv", "--output", "out/predictions.csv"
            )
            results["quarantine"] = run("quarantine")
            yield Workflow(root, home, results, run)
        finally:
            mlflow_reset()


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return _flat(result.stdout)


def test_generate_writes_the_requested_rows(workflow: Workflow) -> None:
    assert "wrote 1,500 synthetic listings to listings.tsv" in _ok(workflow.results["generate"])
    header = (workflow.root / "new.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t")[0] == "test_id" and "price" not in header.split("\t")


def test_ingest_reports_loaded_and_quarantined_counts(workflow: Workflow) -> None:
    out = _ok(workflow.results["ingest"])

    assert re.search(r"batch listings-[0-9a-f]{12}: 1,502 records, 1,500 loaded, 2 quarantined", out), out
    assert "validation PASSED" in out
    assert "quarantined: 1 item_condition_id 'abc' is not an integer" in out
    assert "quarantined: 1 item_condition_id not in 1..5" in out
    assert "report (json):" in out and (workflow.home / "reports" / "validation").is_dir()
    assert (workflow.home / "warehouse.duckdb").is_file()


def test_train_prints_version_scores_and_promotion(workflow: Workflow) -> None:
    out = _ok(workflow.results["train"])

    assert "training on 1,500 validated listings from warehouse:duckdb" in out
    assert re.search(r"model price-alchemy v1 \(run [0-9a-f]{32}\) in \d+s, 3 trials", out), out
    scores = re.search(r"test RMSLE (\d+\.\d{4}) \(rules baseline (\d+\.\d{4})\)", out)
    assert scores, out
    model, baseline = float(scores.group(1)), float(scores.group(2))
    assert 0.2 < model < baseline
    assert "promotion: PROMOTED to champion: no champion existed" in out


def test_predict_writes_one_price_per_good_row_and_reports_bad_lines(workflow: Workflow) -> None:
    result = workflow.results["predict"]
    out = _ok(result)
    errors = _flat(result.stderr)

    predictions = pd.read_csv(workflow.root / "out" / "predictions.csv")
    assert list(predictions.columns) == ["test_id", "price"]
    assert predictions["test_id"].tolist() == list(range(NEW_START_ID, NEW_START_ID + NEW_ROWS))
    assert (predictions["price"] > 0).all() and (predictions["price"] < 2000).all()
    assert predictions["price"].nunique() > NEW_ROWS // 2  # real predictions, not one constant
    assert f"wrote {NEW_ROWS} predictions" in out and "models:/price-alchemy@champion" in out
    assert "2 rows rejected" in out
    assert "rejected line 27: test_id 'abc' is not an integer" in errors
    assert "rejected id 5999999: item_condition_id not in 1..5" in errors


def test_quarantine_lists_the_rows_and_reasons(workflow: Workflow) -> None:
    out = _ok(workflow.results["quarantine"])

    assert "2 quarantined rows" in out
    assert "item_condition_id 'abc' is not an integer" in out
    assert "item_condition_id not in 1..5" in out
    assert "9000001" in out and "9000002" in out


def test_a_second_identical_ingest_keeps_one_copy(workflow: Workflow) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workflow.root)
        out = _ok(workflow.run("ingest", "--input", "listings.tsv"))
        listed = _ok(workflow.run("quarantine"))

    assert "1,500 loaded, 2 quarantined" in out
    assert "2 quarantined rows" in listed


def test_train_from_a_file_that_fails_validation_exits_1_naming_the_check(tmp_path: Path) -> None:
    cents = generate_listings(300, seed=5)
    cents["price"] = cents["price"] * 100  # a batch in cents: the median check must catch it
    write_listings(cents, tmp_path / "cents.tsv")
    home = tmp_path / "home"

    result = _runner(home)("train", "--input", str(tmp_path / "cents.tsv"), "--max-evals", "1")

    assert result.exit_code == 1
    errors = _flat(result.stderr)
    assert "error: DataValidationError: batch cents-" in errors
    assert "critical expectation failed: price_median" in errors
    assert not (home / "mlflow.db").exists()  # nothing was trained or registered


def test_train_with_an_empty_warehouse_exits_1(tmp_path: Path) -> None:
    result = _runner(tmp_path / "home")("train")

    assert result.exit_code == 1
    assert (
        "TrainingError: the duckdb warehouse returned no listings; run `price-alchemy ingest` first"
        in _flat(result.stderr)
    )


def test_predict_without_a_trained_model_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    """A real process: the console script, its exit code and its stderr."""
    new = write_listings(
        generate_listings(5, seed=2, with_price=False), tmp_path / "new.tsv", id_column="test_id"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PRICE_ALCHEMY_"))}
    env |= {"PRICE_ALCHEMY_HOME": str(tmp_path / "home"), "COLUMNS": "250"}

    done = subprocess.run(
        [str(SCRIPT), "predict", "--input", str(new), "--output", str(tmp_path / "out.csv")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    errors = _flat(done.stderr)
    assert (
        "error: ModelNotFoundError: no version of registered model 'price-alchemy' has alias 'champion'; "
        "run `price-alchemy train` first"
    ) in errors
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()
