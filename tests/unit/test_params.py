"""The parameters file: packaged defaults, dotted view for MLflow, strict validation, partial overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from price_alchemy.errors import ConfigError
from price_alchemy.params import Params, load_params

pytestmark = pytest.mark.unit


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_parameters_load_with_the_documented_values() -> None:
    params = load_params()

    assert params.version == 1
    assert params.split.salt == "price-alchemy-v1"
    assert (params.split.valid_fraction, params.split.test_fraction) == (0.1, 0.1)
    assert params.validation.max_bad_fraction == 0.05
    assert params.validation.price_median_range == (5.0, 100.0)
    assert params.tuning.max_evals == 24 and params.tuning.timeout_s == 150.0
    assert params.tuning.families == ("stack",)  # chosen by 5-fold CV (benchmarks/model_quality.py)
    assert params.promotion.margin == 0.002
    assert params.tuning.stack.knn_max_df == 0.02  # weighed by benchmarks/knn_pruning.py
    assert params.features.meaning_weight == 1.0  # weighed by benchmarks/word_vectors.py
    # The YAML and the code defaults tell the same story (an override file may omit any key).
    assert params == Params()


def _lookup(model: Any, dotted: str) -> Any:
    value = model
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return list(value) if isinstance(value, tuple) else value


def test_flat_gives_dotted_scalar_keys_for_mlflow() -> None:
    params = load_params()
    flat = params.flat()

    assert flat["split.salt"] == "price-alchemy-v1"
    assert flat["tuning.ridge.alpha"] == [0.5, 30.0]
    assert flat["validation.max_missing.brand_name"] == 0.8
    assert flat["promotion.margin"] == 0.002
    assert flat["tuning.families"] == list(params.tuning.families)
    assert "tuning" not in flat and "tuning.ridge" not in flat
    assert not any(isinstance(v, dict) for v in flat.values())
    # Every key leads back to its value, and every leaf field has a key.
    assert all(_lookup(params, key) == value for key, value in flat.items())
    leaves = sum(
        len(getattr(params, section).model_dump(mode="json"))
        for section in ("split", "promotion", "training")
    )
    assert sum(k.split(".")[0] in {"split", "promotion", "training"} for k in flat) == leaves
    assert len(flat) == len(set(flat)) > 30


def test_an_invalid_value_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "split:\n  valid_fraction: 0.9\n")

    with pytest.raises(ConfigError) as caught:
        load_params(path)

    message = str(caught.value)
    assert "split.valid_fraction" in message
    assert "less than 0.5" in message
    assert str(path) in message


def test_a_wrong_type_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.max_evals"):
        load_params(_write(tmp_path, "tuning:\n  max_evals: lots\n"))


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_params(_write(tmp_path, "tuning:\n  max_eval: 3\n"))

    assert "tuning.max_eval" in str(caught.value)
    assert "Extra inputs are not permitted" in str(caught.value)


def test_an_unknown_family_and_an_empty_family_list_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tuning\.families"):
        load_params(_write(tmp_path, "tuning:\n  families: [ridge, xgboost]\n"))
    with pytest.raises(ConfigError, match="at least one model family"):
        load_params(_write(tmp_path, "tuning:\n  families: []\n"))


def test_a_partial_override_keeps_every_other_default(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "tuning:\n  max_evals: 5\npromotion:\n  margin: 0.01\n"))

    assert params.tuning.max_evals == 5
    assert params.promotion.margin == 0.01
    assert params.tuning.timeout_s == 150.0
    assert params.tuning.families == Params().tuning.families
    assert params.split == Params().split
    assert params.validation == Params().validation


def test_an_empty_file_gives_the_defaults_and_a_non_mapping_is_refused(tmp_path: Path) -> None:
    assert load_params(_write(tmp_path, "")) == Params()
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_params(_write(tmp_path, "- a\n- b\n"))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read parameters file"):
        load_params(tmp_path / "nope.yaml")


def test_parameters_are_frozen() -> None:
    params = load_params()

    with pytest.raises(ValidationError):
        params.tuning.max_evals = 1  # type: ignore[misc]


def test_with_budget_overrides_only_what_is_given() -> None:
    params = load_params()

    assert params.with_budget() is params
    evals_only = params.with_budget(max_evals=3)
    assert (evals_only.tuning.max_evals, evals_only.tuning.timeout_s) == (3, 150.0)
    both = params.with_budget(max_evals=4, timeout=20)
    assert (both.tuning.max_evals, both.tuning.timeout_s) == (4, 20)
    assert both.tuning.families == params.tuning.families and both.split == params.split
    assert params.tuning.max_evals == 24  # the original is untouched
