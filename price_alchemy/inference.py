"""Batch prediction with a registered model: load it once, check rows, predict dollars."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.data.files import ReadResult
from price_alchemy.errors import ModelNotFoundError
from price_alchemy.params import ValidationParams
from price_alchemy.schema import FEATURE_COLUMNS, LISTING_ID
from price_alchemy.validation import validate_listings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Predicted prices for the rows that could be scored, and every row left out with its reason."""

    prices: pd.DataFrame  # columns: <id column>, price
    rejected: pd.DataFrame  # schema.QUARANTINE_COLUMNS
    model_uri: str


def load_model(settings: Settings, model_uri: str | None = None) -> tuple[Any, str]:
    """The sklearn pipeline behind ``model_uri`` (default: the registry's champion) and its URI."""
    mlflow_store.configure(settings)
    uri = model_uri or mlflow_store.resolve_model_uri(settings)
    try:
        return mlflow_store.load_model(settings, uri), uri
    except Exception as exc:
        raise ModelNotFoundError(f"cannot load model {uri}: {exc}") from exc


def predict_file(model: Any, model_uri: str, read: ReadResult, params: ValidationParams) -> Predictions:
    """Score a read file: unparseable rows and rows breaking a listing rule are left out, with reasons.

    The file's price column (train format) is ignored; only the row rules apply, not the batch
    checks, since a prediction batch may be any size or shape.
    """
    unpriced = read.listings.assign(price=np.nan)  # a train-format price is not an input
    report = validate_listings(unpriced, params, batch_id="predict", require_price=False)
    rows = report.valid
    prices = model.predict(rows[list(FEATURE_COLUMNS)]) if len(rows) else np.empty(0)
    out = pd.DataFrame({read.id_column: rows[LISTING_ID].to_numpy(), "price": np.round(prices, 2)})
    rejected = pd.concat([f for f in (read.rejects, report.quarantine) if not f.empty] or [read.rejects])
    log.info("predicted %d rows with %s, %d rows rejected", len(out), model_uri, len(rejected))
    return Predictions(out, rejected.reset_index(drop=True), model_uri)
