"""Settings from the environment: home, MLflow URIs, refused values, and no state leaking between homes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from price_alchemy.config import Settings, get_settings

pytestmark = pytest.mark.unit


def test_price_alchemy_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRICE_ALCHEMY_HOME", str(tmp_path / "state"))
    get_settings.cache_clear()

    settings = get_settings()

    assert settings.home == tmp_path / "state"
    assert settings.duckdb_path == tmp_path / "state" / "warehouse.duckdb"
    assert settings.reports_dir == tmp_path / "state" / "reports"
    assert get_settings() is settings  # cached until cache_clear()


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings(_env_file=None, home=Path("rel") / "home")

    assert settings.home == tmp_path / "rel" / "home"
    assert settings.home.is_absolute()


def test_embedded_tracking_uri_is_sqlite_under_home(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "h")

    assert settings.mlflow_tracking_uri is None
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert settings.artifact_location == (tmp_path / "h" / "mlartifacts").as_uri()


@pytest.mark.parametrize("variable", ["MLFLOW_TRACKING_URI", "PRICE_ALCHEMY_MLFLOW_TRACKING_URI"])
def test_mlflow_tracking_uri_is_honoured(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://mlflow.example:5000")

    settings = Settings(_env_file=None, home=tmp_path / "h")

    assert settings.tracking_uri == "http://mlflow.example:5000"
    assert settings.artifact_location is None  # the server decides where artifacts go


def test_settings_are_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICE_ALCHEMY_WAREHOUSE", "bigquery")
    monkeypatch.setenv("PRICE_ALCHEMY_BIGQUERY_DATASET", "listings_v2")
    monkeypatch.setenv("PRICE_ALCHEMY_API_KEY", "s3cret")

    settings = Settings(_env_file=None, home=tmp_path)

    assert settings.warehouse == "bigquery"
    assert settings.bigquery_dataset == "listings_v2"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("dataset", ["price-alchemy", "a.b", "drop table;", ""])
def test_a_bad_bigquery_dataset_is_refused(dataset: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, home=tmp_path, bigquery_dataset=dataset)

    assert "bigquery_dataset" in str(caught.value)


def test_a_bad_dataset_in_the_environment_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICE_ALCHEMY_BIGQUERY_DATASET", "my-dataset")
    get_settings.cache_clear()

    with pytest.raises(ValidationError, match="letters, digits and underscores"):
        get_settings()


def test_an_unknown_warehouse_or_log_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="warehouse"):
        Settings(_env_file=None, home=tmp_path, warehouse="sqlite")
    with pytest.raises(ValidationError, match="log_level"):
        Settings(_env_file=None, home=tmp_path, log_level="LOUD")


def test_configuring_mlflow_does_not_pin_later_settings_to_that_store(tmp_path: Path) -> None:
    """A second home in the same process (a test, a re-read of the settings) gets its own store.

    MLflow's ``set_tracking_uri`` exports ``MLFLOW_TRACKING_URI`` for subprocesses, and Settings
    reads that variable as an explicit tracking server.
    """
    from price_alchemy.mlflow_store import configure as configure_mlflow

    first = Settings(_env_file=None, home=tmp_path / "first")
    configure_mlflow(first)

    second = Settings(_env_file=None, home=tmp_path / "second")

    assert second.tracking_uri == f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}"
    assert second.artifact_location == (tmp_path / "second" / "mlartifacts").as_uri()
