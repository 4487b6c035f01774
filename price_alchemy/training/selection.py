"""Pinning the rows a training query selected, so every task of one run uses exactly those rows.

A training run given a warehouse ``query`` used to re-execute it in each task: a batch ingested
between fit and promote, or a sampling query (``USING SAMPLE 50 PERCENT``), then gave the fit and
the promotion different rows, and the champion was scored on rows the challenger was not tested
on. The first task now records the ``(batch_id, listing_id)`` pairs the query returned as an
artifact of the run (:data:`names.SELECTION_ARTIFACT`); later tasks read those batches and keep
exactly those rows (as stored in the warehouse), whatever the query would return now.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.errors import TrainingError
from price_alchemy.names import SELECTION_ARTIFACT
from price_alchemy.schema import LISTING_ID

KEY = ["batch_id", LISTING_ID]


def selection_of(listings: pd.DataFrame) -> pd.DataFrame:
    """The key of every selected row (a query must return ``batch_id`` and ``listing_id``)."""
    missing = [c for c in KEY if c not in listings.columns]
    if missing:
        raise TrainingError(f"a training query must return {', '.join(KEY)}; it lacks {', '.join(missing)}")
    return listings[KEY].astype({"batch_id": str, LISTING_ID: "int64"}).reset_index(drop=True)


def log_selection(selection: pd.DataFrame) -> None:
    """Store the selection with the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(SELECTION_ARTIFACT).name
        selection.to_parquet(path, index=False)
        mlflow_store.log_file(path, str(Path(SELECTION_ARTIFACT).parent))


def load_selection(settings: Settings, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_store.download(settings, f"runs:/{run_id}/{SELECTION_ARTIFACT}", Path(tmp))
        except mlflow_store.MlflowException as exc:
            raise TrainingError(
                f"run {run_id} has no pinned selection ({SELECTION_ARTIFACT}): {exc}"
            ) from exc
        return pd.read_parquet(path)


def apply_selection(listings: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``listings`` the selection names, in the selection's order; all of them, or an error."""
    keyed = listings.astype({"batch_id": str, LISTING_ID: "int64"}).drop_duplicates(KEY)
    pinned = selection.merge(keyed, on=KEY, how="left", indicator=True)
    lost = int((pinned.pop("_merge") != "both").sum())
    if lost:
        raise TrainingError(
            f"{lost} of the {len(selection)} pinned rows are no longer in the warehouse (a batch was "
            "replaced meanwhile); rerun the training from its first task"
        )
    return pinned[listings.columns]
