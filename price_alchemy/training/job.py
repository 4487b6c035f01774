"""Entry-point glue for training: where the listings come from, and budget overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from price_alchemy.config import Settings
from price_alchemy.errors import TrainingError
from price_alchemy.params import Params
from price_alchemy.training.pipeline import StageCallback, TrainingResult, run_training
from price_alchemy.training.tuning import TrialCallback

log = logging.getLogger(__name__)


def load_training_listings(
    settings: Settings,
    params: Params,
    *,
    input_path: Path | None = None,
    query: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Validated listings from a file (checked now) or from the warehouse (checked at ingest)."""
    if input_path is not None:
        from price_alchemy.ingest import check_file

        checked = check_file(input_path, params.validation)
        log.info("%s", checked.summary())
        checked.raise_for_verdict()
        return checked.valid, f"file:{input_path}"

    from price_alchemy.data.warehouse import open_warehouse

    with open_warehouse(settings) as warehouse:
        listings = warehouse.query(query) if query else warehouse.read_listings()
    if listings.empty:
        raise TrainingError(
            f"the {settings.warehouse} warehouse returned no listings; run `price-alchemy ingest` first"
        )
    return listings, f"warehouse:{settings.warehouse}" + (f":{query}" if query else "")


def with_budget(params: Params, max_evals: int | None = None, timeout: float | None = None) -> Params:
    """``params`` with the tuning budget overridden where given."""
    update = {k: v for k, v in {"max_evals": max_evals, "timeout_s": timeout}.items() if v is not None}
    return params.model_copy(update={"tuning": params.tuning.model_copy(update=update)}) if update else params


def train_with_overrides(
    listings: pd.DataFrame,
    settings: Settings,
    params: Params,
    *,
    source: str,
    max_evals: int | None = None,
    timeout: float | None = None,
    on_stage: StageCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> TrainingResult:
    """``run_training`` with the budget overrides a CLI flag or DAG param may give."""
    return run_training(
        listings,
        settings,
        with_budget(params, max_evals, timeout),
        source=source,
        on_stage=on_stage,
        on_trial=on_trial,
    )
