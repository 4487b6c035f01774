"""Only code the package ships runs: a hostile model set as champion is refused everywhere.

A real registry (embedded SQLite MLflow) gets a trained model, then versions an attacker with
write access to the registry could create: a pickle-format model whose payload writes a marker
file when unpickled (with a correct digest tag: tags are writable too), a skops model holding a
type outside the trusted list (which its own ``MLmodel`` declares trusted), and a registered
version whose model file was altered after registration. ``serve`` (the model store), ``predict``
and a training run's promotion must all refuse them before deserializing, name the version and
the reason, and never run the payload.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from pydantic import SecretStr
from typer.testing import CliRunner

from price_alchemy import mlflow_store
from price_alchemy.cli import app
from price_alchemy.config import Settings, get_settings
from price_alchemy.errors import ModelRefusedError
from price_alchemy.model_files import file_digest, load_model_dir
from price_alchemy.names import CHAMPION, MODEL_DIGEST_TAG
from price_alchemy.params import Params
from price_alchemy.serving.app import create_app
from price_alchemy.serving.model_store import ModelStore
from price_alchemy.training.stages import run_training

pytestmark = pytest.mark.integration


class Payload:
    """Unpickling this creates ``marker``: proof that the model's own code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


class Untrusted:
    """A harmless class that is not in TRUSTED_TYPES (skops lists it as untrusted)."""

    def __init__(self) -> None:
        self.value = 1


def _mlmodel(fmt: str, file: str, trusted: list[str] | None = None) -> str:
    sklearn: dict[str, object] = {
        "pickled_model": file,
        "serialization_format": fmt,
        "sklearn_version": "1.9.1",
    }
    if trusted is not None:
        sklearn["skops_trusted_types"] = trusted
    flavors = {
        "python_function": {"loader_module": "mlflow.sklearn", "model_path": file},
        "sklearn": sklearn,
    }
    return yaml.safe_dump({"flavors": flavors})


def _register_dir(settings: Settings, folder: Path, file: str) -> str:
    """Log ``folder`` as a run's ``model`` artifacts and register it, digest tag included."""
    mlflow_store.configure(settings)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    digest = "sha256:" + hashlib.sha256((folder / file).read_bytes()).hexdigest()
    version = client.create_model_version(
        settings.model_name,
        source=f"runs:/{run.info.run_id}/model",
        run_id=run.info.run_id,
        tags={MODEL_DIGEST_TAG: digest, "test_rmsle": "0.1"},
    )
    return str(version.version)


@pytest.fixture
def trained(settings: Settings, params: Params, listings: pd.DataFrame) -> Iterator[str]:
    """A good champion trained into ``settings``' registry; yields its version."""
    result = run_training(listings, settings, params, source="test:safety")
    assert result.decision.promoted
    yield result.model_version


def _pickle_model(settings: Settings, tmp_path: Path, marker: Path) -> str:
    folder = tmp_path / "pickle-model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    (folder / "MLmodel").write_text(_mlmodel("pickle", "model.pkl"))
    return _register_dir(settings, folder, "model.pkl")


def _untrusted_skops_model(settings: Settings, tmp_path: Path) -> str:
    import skops.io

    folder = tmp_path / "skops-model"
    folder.mkdir()
    skops.io.dump({"estimator": Untrusted()}, folder / "model.skops")
    untrusted = skops.io.get_untrusted_types(file=folder / "model.skops")
    assert any(t.endswith("Untrusted") for t in untrusted)
    (folder / "MLmodel").write_text(_mlmodel("skops", "model.skops", trusted=untrusted))  # trusts itself
    return _register_dir(settings, folder, "model.skops")


def _set_champion(settings: Settings, version: str) -> None:
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)


def test_a_pickle_champion_is_refused_by_serve_predict_and_promotion(
    settings: Settings, params: Params, listings: pd.DataFrame, trained: str, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload does work when unpickled...
    assert marker.exists()
    marker.unlink()
    bad = _pickle_model(settings, tmp_path, marker)
    _set_champion(settings, bad)

    # serve: the store starts without a model (there is no cached one) and says why
    store = ModelStore(settings)
    store.load_initial()
    assert store.current is None
    assert f"price-alchemy v{bad}" in str(store.last_error)
    assert "serialization format 'pickle' refused" in str(store.last_error)

    # predict (the CLI): exit 1 with the reason, nothing written
    new = tmp_path / "new.tsv"
    listings.head(5).drop(columns="price").rename(columns={"listing_id": "test_id"}).to_csv(
        new, sep="\t", index=False
    )
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["predict", "--input", str(new), "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 1, result.output
    assert "Model" in result.output and "refused" in " ".join(result.output.split())  # ModelRefusedError
    assert not (tmp_path / "out.csv").exists()

    # a training run's promotion: the refused champion is replaced, never loaded
    again = run_training(listings, settings, params, source="test:safety")
    assert again.decision.promoted
    assert again.decision.reason.startswith(f"champion v{bad} was refused as unsafe to load")
    assert mlflow_store.require_alias(settings).version == again.model_version

    assert not marker.exists()  # the payload never ran


def test_a_skops_model_with_an_untrusted_type_is_refused_even_if_it_trusts_itself(
    settings: Settings, trained: str, tmp_path: Path
) -> None:
    bad = _untrusted_skops_model(settings, tmp_path)
    with pytest.raises(
        ModelRefusedError, match=rf"price-alchemy v{bad}: holds types outside the trusted list: .*Untrusted"
    ):
        mlflow_store.load_version(settings, mlflow_store.version_info(settings, bad))


def test_a_model_file_changed_after_registration_is_refused(settings: Settings, trained: str) -> None:
    info = mlflow_store.version_info(settings, trained)
    assert info.digest is not None and info.digest.startswith("sha256:")
    mlflow_store.load_version(settings, info)  # loads while untouched
    files = list((settings.home / "mlartifacts").rglob("model.skops"))
    assert len(files) == 1
    with files[0].open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(
        ModelRefusedError, match=rf"v{trained}: model file digest sha256:\w+ differs from the registered"
    ):
        mlflow_store.load_version(settings, info)


def test_a_version_registered_before_digests_is_pinned_on_first_load_then_held_to_it(
    settings: Settings, trained: str
) -> None:
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.delete_model_version_tag(settings.model_name, trained, MODEL_DIGEST_TAG)  # as the old code left it
    legacy = mlflow_store.version_info(settings, trained)
    assert legacy.digest is None
    mlflow_store.load_version(settings, legacy)  # format and types checked, then pinned
    pinned = mlflow_store.version_info(settings, trained).digest
    assert pinned is not None and pinned.startswith("sha256:")
    assert pinned == file_digest(_artifact(settings, "model.skops"))
    with _artifact(settings, "model.skops").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelRefusedError, match="differs from the registered"):
        mlflow_store.load_version(settings, mlflow_store.version_info(settings, trained))


def _artifact(settings: Settings, name: str) -> Path:
    files = list((settings.home / "mlartifacts").rglob(name))
    assert len(files) == 1, files
    return files[0]


def _tamper_with_a_trusted_model(settings: Settings) -> None:
    """Replace the registered model file by another valid, trusted pipeline (a constant price)."""
    import skops.io
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import Pipeline

    skops.io.dump(
        Pipeline([("constant", DummyRegressor(strategy="constant", constant=1234.0))]),
        _artifact(settings, "model.skops"),
    )


@pytest.mark.parametrize(
    "uri",
    [
        "models:/price-alchemy/{v}",
        "models:///price-alchemy/{v}",
        "MODELS:/price-alchemy/{v}",
        "models:/price-alchemy@champion",
    ],
)
def test_every_spelling_of_a_registry_uri_is_held_to_the_digest(
    settings: Settings, trained: str, uri: str
) -> None:
    _tamper_with_a_trusted_model(settings)
    with pytest.raises(ModelRefusedError, match="differs from the registered"):
        mlflow_store.load_model(settings, uri.format(v=trained))


def test_another_registered_model_is_not_loaded(settings: Settings, trained: str) -> None:
    with pytest.raises(ModelRefusedError, match="only models:/price-alchemy/<version>"):
        mlflow_store.load_model(settings, f"models:/someone-else/{trained}")


def test_predict_refuses_a_tampered_champion_and_a_pickle_run_uri(
    settings: Settings, trained: str, listings: pd.DataFrame, tmp_path: Path
) -> None:
    new = tmp_path / "new.tsv"
    listings.head(5).drop(columns="price").rename(columns={"listing_id": "test_id"}).to_csv(
        new, sep="\t", index=False
    )
    _tamper_with_a_trusted_model(settings)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["predict", "--input", str(new), "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 1 and "differs from the registered" in " ".join(result.output.split())

    marker = tmp_path / "payload-ran"
    _pickle_model(settings, tmp_path, marker)
    run_id = mlflow_store.version_info(settings, str(int(trained) + 1)).run_id
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--input",
            str(new),
            "--output",
            str(tmp_path / "out.csv"),
            "--model-uri",
            f"runs:/{run_id}/model",
        ],
    )
    assert result.exit_code == 1 and "serialization format 'pickle' refused" in " ".join(
        result.output.split()
    )
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_a_trusted_but_foreign_object_is_not_served(settings: Settings, tmp_path: Path) -> None:
    import skops.io
    from sklearn.dummy import DummyRegressor

    folder = tmp_path / "dummy"
    folder.mkdir()
    skops.io.dump(DummyRegressor(), folder / "model.skops")
    (folder / "MLmodel").write_text(_mlmodel("skops", "model.skops"))
    with pytest.raises(ModelRefusedError, match="holds a DummyRegressor, not a price_alchemy pipeline"):
        load_model_dir(folder, expected_digest=None, what="dummy")


@pytest.mark.parametrize("mlmodel", ["flavors: {sklearn: [1, 2]}", "flavors: 3", "- a list", ":::"])
def test_a_malformed_mlmodel_is_a_refusal(tmp_path: Path, mlmodel: str) -> None:
    (tmp_path / "MLmodel").write_text(mlmodel)
    with pytest.raises(ModelRefusedError, match="not an MLflow sklearn model"):
        load_model_dir(tmp_path, expected_digest=None, what="x")


def test_a_profile_changed_after_registration_is_refused(settings: Settings, trained: str) -> None:
    profile = _artifact(settings, "profile.json")
    profile.write_text(profile.read_text().replace('"coverage": 0.8', '"coverage": 0.5'))
    store = ModelStore(settings)
    with pytest.raises(ModelRefusedError, match=r"profile\.json differs from the one registered"):
        store.refresh()


def test_the_api_keeps_serving_the_last_good_model_when_the_alias_moves_to_a_refused_one(
    settings: Settings, trained: str, tmp_path: Path
) -> None:
    store = ModelStore(settings)
    store.load_initial()
    assert store.current is not None and store.current.meta.version == trained
    marker = tmp_path / "payload-ran"
    _set_champion(settings, _pickle_model(settings, tmp_path, marker))
    bad = mlflow_store.require_alias(settings).version
    with pytest.raises(ModelRefusedError):
        store.refresh()
    assert store.current.meta.version == trained  # still serving the good one
    assert store.refused_version == bad
    assert store.refresh() is False  # not downloaded again while the alias stays there
    assert not marker.exists()
    app_settings = settings.model_copy(update={"api_key": SecretStr("k")})
    with TestClient(create_app(app_settings, watch=False)) as api:  # a restart: refused, then the cache
        info = api.get("/v1/model", headers={"X-API-Key": "k"}).json()
        assert api.app.state.serving.store.refresh() is False  # and not downloaded again
    assert info["version"] == trained and info["source"] == "cache"
    assert info["refused_version"] == bad
    assert "serialization format 'pickle' refused" in info["load_error"]
    # a restart without the registry falls back to the cached good model, re-checked by digest
    restarted = ModelStore(settings)
    assert restarted.load_cached().meta.version == trained
    cached = next(settings.model_cache_dir.rglob("model.skops"))
    cached.write_bytes(cached.read_bytes() + b"\0")
    with pytest.raises(ModelRefusedError, match="digest"):
        restarted.load_cached()
