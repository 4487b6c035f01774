"""The tuning backend setting: ``tuning.backend`` (local | spark) and ``tuning.spark_parallelism``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from price_alchemy.errors import ConfigError
from price_alchemy.params import TuningParams, load_params
from price_alchemy.training.tuning import tune

pytestmark = pytest.mark.unit


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_the_default_is_the_local_search_on_every_core() -> None:
    tuning = load_params().tuning
    assert tuning.backend == "local"
    assert tuning.spark_parallelism is None
    assert tuning.parallelism == (os.cpu_count() or 1)


def test_spark_and_its_parallelism_are_read_from_the_parameters_file(tmp_path: Path) -> None:
    tuning = load_params(_write(tmp_path, "tuning:\n  backend: spark\n  spark_parallelism: 6\n")).tuning
    assert (tuning.backend, tuning.spark_parallelism, tuning.parallelism) == ("spark", 6, 6)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tuning:\n  backend: dask\n", r"tuning\.backend"),
        ("tuning:\n  spark_parallelism: 0\n", r"tuning\.spark_parallelism"),
        ("tuning:\n  spark_parallelism: 500\n", r"tuning\.spark_parallelism"),  # SparkTrials caps at 128
        ("tuning:\n  spark_paralelism: 2\n", r"tuning\.spark_paralelism"),
    ],
)
def test_a_bad_backend_setting_is_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_params(_write(tmp_path, text))


def test_spark_without_pyspark_says_which_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what an environment without pyspark sees
    X = sp.csr_matrix(np.eye(4))
    y = np.ones(4)
    with pytest.raises(
        ConfigError, match=r"spark needs the pyspark package \(pip install .price-alchemy\[spark\]."
    ):
        tune(X, y, X, y, TuningParams(backend="spark", families=("ridge",), max_evals=1))
