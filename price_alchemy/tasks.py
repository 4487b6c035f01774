"""Task-level entry points for orchestrators: one function per pipeline step, JSON in, JSON out.

The Airflow DAGs in ``dags/`` call these (one call per task), but nothing here imports Airflow:
any scheduler, a notebook or a test can run the same steps. Arguments are small JSON-able values
(paths, ids, numbers, an ISO logical date) and every function returns a small JSON-able dict that
fits in an XCom: never a DataFrame. The training steps read their listings from the warehouse
and recompute the deterministic split, so each step can run in its own process. The CLI shares
:func:`training_listings` (where training data comes from) with them.

Idempotence: a synthetic batch is named after its logical date and a file batch after its
content, and loading a batch replaces any earlier copy of it; rerunning a step for the same
logical date therefore leaves the warehouse as it was.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from price_alchemy import runtime

if TYPE_CHECKING:
    import pandas as pd

    from price_alchemy.config import Settings
    from price_alchemy.params import Params
    from price_alchemy.split import Split

log = logging.getLogger(__name__)

#: Listing ids of a synthetic batch start at ``ordinal(day) * ID_STRIDE``: days never share an id.
ID_STRIDE = 10_000_000
DEFAULT_SYNTHETIC_ROWS = 2000

__all__ = [
    "check_drift",
    "extract_batch",
    "fit_and_evaluate",
    "promote",
    "register",
    "score_listings",
    "synthetic_batch_id",
    "training_listings",
    "tune",
    "validate_and_load",
]


def _setup(settings: Settings | None) -> tuple[Settings, Params]:
    return runtime.start(settings)


def batch_day(logical_date: str) -> date:
    """The calendar day (UTC as given) of an ISO date or datetime string."""
    text = logical_date.strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError as exc:
        raise ValueError(f"logical_date must be an ISO date or datetime, got {logical_date!r}") from exc


def synthetic_batch_id(day: date) -> str:
    return f"synthetic_{day:%Y%m%d}"


def extract_batch(
    logical_date: str,
    *,
    input_path: str | None = None,
    rows: int = DEFAULT_SYNTHETIC_ROWS,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Locate the batch to ingest: the given file, or synthetic listings for ``logical_date``.

    Synthetic listings are generated deterministically from the day (seed ``YYYYMMDD``, ids from
    ``ordinal(day) * ID_STRIDE``) into ``$PRICE_ALCHEMY_HOME/batches/``, so a rerun for the same day
    writes the same file and the same batch id. A given file keeps its content-hash batch id.
    """
    settings, _ = _setup(settings)
    if input_path:
        from price_alchemy.errors import DataFormatError

        path = Path(input_path).expanduser().resolve()
        if not path.is_file():
            raise DataFormatError(f"input file {path} does not exist")
        log.info("batch source: file %s (%d bytes)", path, path.stat().st_size)
        return {"source": "file", "path": str(path), "batch_id": None, "rows": None}

    from price_alchemy.data.files import write_listings
    from price_alchemy.data.synthetic import generate_listings

    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    day = batch_day(logical_date)
    batch_id = synthetic_batch_id(day)
    frame = generate_listings(rows, seed=int(f"{day:%Y%m%d}"), start_id=day.toordinal() * ID_STRIDE)
    path = write_listings(frame, settings.home / "batches" / f"{batch_id}.tsv")
    log.info("batch source: %d synthetic listings for %s written to %s", rows, day, path)
    return {"source": "synthetic", "path": str(path), "batch_id": batch_id, "rows": rows}


def validate_and_load(
    path: str, *, batch_id: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Validate a listings file and load its valid rows into the warehouse (``ingest_file``).

    Raises ``DataValidationError`` naming the failed checks when the batch fails; its quarantine
    and validation report are written first. Quarantine counts by reason go to the log.
    """
    settings, params = _setup(settings)
    from price_alchemy.data.warehouse import open_warehouse
    from price_alchemy.errors import DataValidationError
    from price_alchemy.ingest import ingest_file

    with open_warehouse(settings) as warehouse:
        try:
            checked = ingest_file(
                Path(path), warehouse, params.validation, settings.reports_dir, batch_id=batch_id
            )
        except DataValidationError as exc:
            log.error(
                "validation failed for %s; failed checks: %s; bad fraction: %s",
                path,
                ", ".join(exc.failed) or "(none named)",
                "n/a" if exc.bad_fraction is None else f"{exc.bad_fraction:.2%}",
            )
            raise
        total_rows = int(warehouse.query("SELECT COUNT(*) AS n FROM {listings}")["n"].iloc[0])
    for reason, count in checked.reason_counts().items():
        log.info("quarantined %d rows: %s", count, reason)
    result = {
        "batch_id": checked.batch_id,
        "records": int(checked.read.n_records),
        "loaded": len(checked.valid),
        "quarantined": len(checked.quarantine),
        "bad_fraction": round(float(checked.bad_fraction), 6),
        "warehouse_rows": total_rows,
        "report": str(checked.report_paths.get("json", "")),
        "data_docs": str(checked.report_paths.get("data_docs", "")),
    }
    log.info(
        "batch %s: %d of %d records loaded, %d quarantined; the warehouse now holds %d listings",
        result["batch_id"],
        result["loaded"],
        result["records"],
        result["quarantined"],
        total_rows,
    )
    return result


def training_listings(
    settings: Settings,
    params: Params,
    *,
    input_path: Path | None = None,
    query: str | None = None,
    batch_ids: list[str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Validated listings to train on, and where they came from.

    A file is validated now (and not stored); the warehouse's listings were validated at ingest:
    ``query`` (a SELECT over ``{listings}``), the given batches, or every listing.
    """
    if input_path is not None:
        from price_alchemy.ingest import check_file

        checked = check_file(input_path, params.validation)
        log.info("%s", checked.summary())
        checked.raise_for_verdict()
        return checked.valid, f"file:{input_path}"

    from price_alchemy.data.warehouse import open_warehouse
    from price_alchemy.errors import TrainingError

    with open_warehouse(settings) as warehouse:
        if query:
            listings, source = warehouse.query(query), f"warehouse:{settings.warehouse}:{query}"
        elif batch_ids:
            listings = warehouse.read_listings(batch_ids=batch_ids)
            source = f"warehouse:{settings.warehouse}:{len(batch_ids)} batches"
        else:
            listings, source = warehouse.read_listings(), f"warehouse:{settings.warehouse}"
    if listings.empty:
        what = f"none of batches {batch_ids}" if batch_ids and not query else "no listings"
        raise TrainingError(
            f"the {settings.warehouse} warehouse returned {what}; run `price-alchemy ingest` first"
        )
    return listings, source


def _training_split(
    settings: Settings,
    params: Params,
    *,
    query: str | None,
    batch_ids: list[str] | None,
    run_id: str | None = None,
) -> tuple[pd.DataFrame, Split, str]:
    """The listings a training step works on, their deterministic split, and MLflow pointed at the store.

    With a ``query`` and the ``run_id`` of the run that executed it, the rows are those the query
    selected then (pinned by ``tune``), read back from their batches: the query is not re-run.
    """
    from price_alchemy import mlflow_store
    from price_alchemy.training.selection import apply_selection, load_selection
    from price_alchemy.training.stages import prepare_split

    if query and run_id:
        if not batch_ids:
            raise ValueError("a query run's later steps need the batch_ids that tune returned")
        listings, origin = training_listings(settings, params, batch_ids=batch_ids)
        listings = apply_selection(listings, load_selection(settings, run_id))
        origin = f"warehouse:{settings.warehouse}:rows pinned by run {run_id} for {query}"
    else:
        listings, origin = training_listings(settings, params, query=query or None, batch_ids=batch_ids)
    split = prepare_split(listings, params)
    mlflow_store.configure(settings)
    return listings, split, origin


def tune(
    *,
    query: str | None = None,
    max_evals: int | None = None,
    timeout: float | None = None,
    source: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Search model configurations on the warehouse listings (all, or ``query``); open the MLflow run.

    Returns the parent run id and the batch ids read, which the later steps train and evaluate on,
    so that batches landing meanwhile change nothing. A ``query`` runs here only: the rows it
    selected are pinned to the run (:mod:`price_alchemy.training.selection`) and the later steps
    use exactly those.
    """
    settings, params = _setup(settings)
    from price_alchemy import mlflow_store
    from price_alchemy.training.selection import log_selection, selection_of
    from price_alchemy.training.stages import tune_stage

    budget = params.with_budget(max_evals, timeout)
    listings, split, origin = _training_split(settings, budget, query=query, batch_ids=None)
    selection = selection_of(listings) if query else None
    batch_ids = sorted(str(b) for b in listings["batch_id"].unique())
    log.info(
        "tuning on %d listings from %s (max_evals=%d, timeout=%.0fs)",
        len(listings),
        origin,
        budget.tuning.max_evals,
        budget.tuning.timeout_s,
    )
    run_id, _ = tune_stage(split, settings, budget, source=source or origin, input_rows=len(listings))
    if selection is not None:
        with mlflow_store.run(run_id=run_id):
            log_selection(selection)
        log.info(
            "pinned the %d rows the query selected (%d batches) to run %s",
            len(selection),
            len(batch_ids),
            run_id,
        )
    log.info("MLflow parent run %s (experiment %s)", run_id, settings.experiment_name)
    return {"run_id": run_id, "rows": len(listings), "query": query or None, "batch_ids": batch_ids}


def fit_and_evaluate(
    run_id: str,
    *,
    query: str | None = None,
    batch_ids: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Fit the searched model, score it and the rules baseline on the test split, log the model."""
    settings, params = _setup(settings)
    from price_alchemy.training.stages import fit_stage

    listings, split, _ = _training_split(settings, params, query=query, batch_ids=batch_ids, run_id=run_id)
    evaluated = fit_stage(split, settings, params, run_id)
    log.info(
        "run %s: test RMSLE %.4f (rules baseline %.4f); model %s",
        run_id,
        evaluated.test_metrics["rmsle"],
        evaluated.baseline_metrics["rmsle"],
        evaluated.model_uri,
    )
    return {**asdict(evaluated), "rows": len(listings)}


def register(evaluated: dict[str, Any], *, settings: Settings | None = None) -> dict[str, Any]:
    """Register the logged model (the dict ``fit_and_evaluate`` returned) as a new version."""
    settings, _ = _setup(settings)
    from price_alchemy import mlflow_store
    from price_alchemy.training.stages import EvaluatedModel, register_stage

    mlflow_store.configure(settings)

    model = EvaluatedModel(
        run_id=evaluated["run_id"],
        model_uri=evaluated["model_uri"],
        test_metrics=dict(evaluated["test_metrics"]),
        baseline_metrics=dict(evaluated["baseline_metrics"]),
    )
    version = register_stage(settings, model)
    uri = mlflow_store.version_uri(settings.model_name, version)
    log.info("registered %s (run %s)", uri, model.run_id)
    return {"model_name": settings.model_name, "version": version, "model_uri": uri, "run_id": model.run_id}


def promote(
    version: str,
    *,
    query: str | None = None,
    batch_ids: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Alias the version ``challenger`` and make it ``champion`` if it beats the current one.

    Both are scored on the test split of the rows the version was trained on (for a query, those
    its run pinned).
    """
    settings, params = _setup(settings)
    from price_alchemy import mlflow_store
    from price_alchemy.training.stages import promote_stage

    run_id = mlflow_store.version_info(settings, str(version)).run_id if query else None
    listings, split, _ = _training_split(settings, params, query=query, batch_ids=batch_ids, run_id=run_id)
    decision = promote_stage(split, settings, params, str(version))
    log.info(
        "%s v%s %s: %s",
        decision.model_name,
        decision.version,
        "PROMOTED to champion" if decision.promoted else "not promoted",
        decision.reason,
    )
    return {**asdict(decision), "rows": len(listings)}


def check_drift(
    end: str | None = None,
    *,
    window_hours: float | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Compare the requests of the window ending at ``end`` (ISO; default now) with the champion.

    Indexes the monitoring documents, writes the HTML report, logs an MLflow run (see
    ``price_alchemy.monitoring.drift_job``) and returns the verdict as a small dict, with
    ``trigger_retraining`` true when the window drifted and ``monitoring.trigger_retraining`` allows
    a retrain. Rerunning for the same ``end`` overwrites the same monitoring documents.
    """
    settings, params = _setup(settings)
    from price_alchemy.monitoring.drift_job import run_monitor

    until = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else None
    report = run_monitor(settings, params, window_hours=window_hours, end=until)
    for line in report.summary().splitlines():
        log.info("%s", line)
    result = report.to_dict()
    result["trigger_retraining"] = bool(report.drifted and params.monitoring.trigger_retraining)
    return result


def score_listings(
    *, query: str | None = None, input_path: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Price what has no price from the champion into ``predictions`` (:mod:`price_alchemy.scoring`).

    By default every warehouse batch with an unscored listing; else the rows of ``query`` or the
    file ``input_path``. Idempotent per batch and model version: a rerun finds nothing open, or
    replaces the same rows. Progress goes to the log; the counts are the return value. Without a
    champion there is nothing to price with: ``{"skipped": True, "reason": ...}``.
    """
    settings, _ = _setup(settings)
    from price_alchemy import mlflow_store
    from price_alchemy.scoring import score_warehouse

    mlflow_store.configure(settings)
    if mlflow_store.alias_version(settings) is None:
        # Listings often arrive before the first model: nothing to price with yet, not a failure.
        reason = f"no version of {settings.model_name!r} is champion yet: nothing scored"
        log.warning("%s", reason)
        return {"skipped": True, "reason": reason}
    path = Path(input_path).expanduser().resolve() if input_path else None
    return score_warehouse(settings, query=query or None, input_path=path).to_dict()
