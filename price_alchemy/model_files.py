"""Safe loading of a saved model directory: only the package's own code may run.

MLflow's own loader takes the serialization format and the skops trusted-types list from the
model's ``MLmodel`` file, so a model that declares itself pickle, or trusts any type, runs code on
load. Here, before a single byte is deserialized:

1. the ``MLmodel`` file is read as plain YAML and the sklearn flavor must say ``skops``;
2. the model file must lie inside the model directory and, when a registration pinned it, have
   the SHA-256 recorded then (:func:`model_digest`), so a version cannot be swapped under its number;
3. every type the skops archive names must be one skops trusts by default (scikit-learn, numpy,
   scipy, builtins) or in :data:`price_alchemy.estimators.TRUSTED_TYPES` (the list in the model's
   own files is ignored);

and once loaded, the object must be a scikit-learn ``Pipeline`` (what the package saves), so a
harmless but foreign object, such as a constant regressor, is not served as a price model, and its
word-vector blocks must have been fitted with the word-vector table this installation ships
(:mod:`price_alchemy.word_vectors`; another table would give other features).

Any failure raises :class:`ModelRefusedError` naming the model and the reason. No network, no
MLflow: :mod:`price_alchemy.mlflow_store` downloads, this module checks and loads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from price_alchemy.errors import ModelRefusedError
from price_alchemy.estimators import TRUSTED_TYPES
from price_alchemy.word_vectors import check_word_vectors

SKOPS_FORMAT = "skops"


def model_file(model_dir: Path, what: str) -> Path:
    """The serialized model file of an MLflow sklearn model directory, after checking its format."""
    import yaml

    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        flavor = mlmodel["flavors"]["sklearn"]
        if not isinstance(flavor, dict):
            raise TypeError(f"the sklearn flavor is a {type(flavor).__name__}, not a mapping")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ModelRefusedError(f"{what}: not an MLflow sklearn model ({type(exc).__name__}: {exc})") from exc
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != SKOPS_FORMAT:
        raise ModelRefusedError(f"{what}: serialization format {fmt!r} refused; only skops models are loaded")
    path = (model_dir / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_file() or model_dir.resolve() not in path.parents:
        raise ModelRefusedError(f"{what}: model file {flavor.get('pickled_model')!r} is not inside the model")
    return path


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def model_digest(model_dir: Path) -> str:
    """The SHA-256 of a model directory's serialized model file (what a registered version pins)."""
    return file_digest(model_file(model_dir, str(model_dir)))


def check_model_dir(model_dir: Path, what: str) -> Path:
    """Checks 1 and 3 without deserializing anything; returns the model file's path."""
    import skops.io

    path = model_file(model_dir, what)
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    except Exception as exc:  # not a skops archive at all
        raise ModelRefusedError(f"{what}: unreadable skops file ({type(exc).__name__}: {exc})") from exc
    if untrusted:
        raise ModelRefusedError(f"{what}: holds types outside the trusted list: {', '.join(untrusted)}")
    return path


def load_model_dir(model_dir: Path, *, expected_digest: str | None, what: str) -> Any:
    """The pipeline in ``model_dir``, after the checks of the module docstring.

    ``expected_digest`` None skips the digest check (a model given by a run URI or a path, which no
    registration pinned); the format, type and pipeline checks always apply.
    """
    import skops.io
    from sklearn.pipeline import Pipeline

    path = check_model_dir(model_dir, what)
    if expected_digest is not None:
        actual = file_digest(path)
        if actual != expected_digest:
            raise ModelRefusedError(
                f"{what}: model file digest {actual} differs from the registered {expected_digest}"
            )
    try:
        loaded = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # a trusted type refusing its state: still a refusal, with the reason
        raise ModelRefusedError(f"{what}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, Pipeline):
        raise ModelRefusedError(f"{what}: holds a {type(loaded).__name__}, not a price_alchemy pipeline")
    try:
        check_word_vectors(loaded)
    except ValueError as exc:
        raise ModelRefusedError(f"{what}: {exc}") from exc
    return loaded
