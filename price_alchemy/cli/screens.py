"""What the CLI shows while it works: progress lines on stderr, result tables on stdout (rich).

Long work shows progress (reading a file, tuning, shipping); results a person would rather see than
read are tables. The commands in :mod:`price_alchemy.cli.commands` call these; nothing else does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from price_alchemy.config import Settings
    from price_alchemy.inference import FileScoring, Predictions
    from price_alchemy.ingest import CheckedBatch
    from price_alchemy.monitoring.shipping import ShipStats
    from price_alchemy.params import Params
    from price_alchemy.scoring import ScoringRun
    from price_alchemy.training.stages import TrainingResult
    from price_alchemy.training.tuning import TrialRecord

out = Console()
err = Console(stderr=True)


def row_progress(label: str) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn(label),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def print_batch(checked: CheckedBatch) -> None:
    """One line for the batch, its top quarantine reasons and where its reports are."""
    out.print(
        f"batch [bold]{checked.batch_id}[/]: {checked.read.n_records:,} records, "
        f"{len(checked.valid):,} loaded, {len(checked.quarantine):,} quarantined "
        f"({checked.bad_fraction:.2%}); validation {'PASSED' if checked.passed else 'FAILED'}"
    )
    for reason, count in checked.reason_counts().head(8).items():
        out.print(f"  quarantined: {count:>6,}  {reason}")
    for kind, path in checked.report_paths.items():
        out.print(f"  report ({kind}): {path}")


def train_with_progress(
    settings: Settings,
    params: Params,
    listings: pd.DataFrame,
    source: str,
    max_evals: int | None,
    timeout: float | None,
) -> TrainingResult:
    from price_alchemy.training.stages import run_training

    params = params.with_budget(max_evals, timeout)
    budget = params.tuning.max_evals
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("tuning", total=budget)
        best: list[float] = []

        def on_trial(trial: TrialRecord) -> None:
            if trial.valid_rmsle is not None:
                best.append(trial.valid_rmsle)
            shown = f"best valid RMSLE {min(best):.4f}" if best else "no successful trial yet"
            bar.update(task, advance=1, description=f"tuning ({trial.family} {trial.seconds:.1f}s; {shown})")

        return run_training(
            listings,
            settings,
            params,
            source=source,
            on_stage=lambda message: bar.console.log(message),
            on_trial=on_trial,
        )


def predictions_table(listings: pd.DataFrame, prices: pd.DataFrame, limit: int) -> Table:
    """The first ``limit`` predictions beside what was listed (``predict --show``, the demo)."""
    import pandas as pd
    from rich.text import Text

    from price_alchemy.schema import LISTING_ID

    id_column = str(prices.columns[0])  # <id column>, price: as written to the CSV
    listed = listings[[LISTING_ID, "name", "item_condition_id", "brand_name"]].drop_duplicates(LISTING_ID)
    shown = prices.head(limit).merge(listed, left_on=id_column, right_on=LISTING_ID, how="left")
    table = Table(
        id_column,
        "name",
        "condition",
        "brand",
        "suggested price",
        title=f"Sample predictions ({len(shown):,} of {len(prices):,})",
    )
    table.columns[-1].justify = "right"
    for row in shown.itertuples(index=False):
        table.add_row(
            str(getattr(row, id_column)),
            Text("" if pd.isna(row.name) else str(row.name)[:40]),  # Text: a "[RM]" is not markup
            "" if pd.isna(row.item_condition_id) else str(row.item_condition_id),
            Text("" if pd.isna(row.brand_name) else str(row.brand_name)),
            f"${row.price:,.2f}",
        )
    return table


def write_strict_predictions(result: Predictions, output: Path) -> None:
    """``predict --strict``: each rejected row on stderr, the prices to ``output``, one line on stdout."""
    for row in result.rejected.itertuples():
        where = (
            f"line {row.line}" if row.line == row.line and row.line is not None else f"id {row.listing_id}"
        )
        err.print(f"rejected {where}: {row.reason}")
    output.parent.mkdir(parents=True, exist_ok=True)
    result.prices.to_csv(output, index=False)
    out.print(
        f"wrote {len(result.prices):,} predictions to {output} with {result.model_uri}; "
        f"{len(result.rejected):,} rows rejected"
    )


def print_file_scoring(result: FileScoring) -> None:
    """The summary of ``predict`` on stderr: what was priced how, what was left out, where the flags are."""
    as_read = result.priced - result.imputed - result.fallback
    fields = ", ".join(f"{field} {n:,}" for field, n in list(result.by_field.items())[:6])
    rate = result.priced / result.seconds if result.seconds > 0 else 0.0
    err.print(
        f"priced {result.priced:,} of {result.records:,} records of {result.source} with {result.model} "
        f"in {result.seconds:.1f}s ({rate:,.0f} rows/s)"
    )
    err.print(
        f"  as read: {as_read:,}; fields imputed: {result.imputed:,}" + (f" ({fields})" if fields else "")
    )
    err.print(f"  fallback price (no usable content): {result.fallback:,}")
    left = f"  left out: {result.skipped:,} without an id, {result.duplicates:,} duplicate ids (first kept)"
    err.print(
        left + (f", {result.unpriced:,} needing a fallback the model has not" if result.unpriced else "")
    )
    err.print(f"  flags: {result.report}")


def first_predictions(source: Path, output: Path, limit: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first listings of ``source`` and the first ``limit`` rows of ``output``, for ``--show``."""
    import pandas as pd

    from price_alchemy.data.files import stream_listings

    with stream_listings(source) as stream:
        first = next(stream.chunks, None)
    listings = first.listings if first is not None else pd.DataFrame()
    return listings, pd.read_csv(output, nrows=limit)


def score_with_progress(
    settings: Settings,
    *,
    query: str | None,
    input_path: Path | None,
    model_uri: str | None,
    workers: int | None,
) -> ScoringRun:
    """The scoring run with a progress bar (listings priced of those open, when known)."""
    from price_alchemy.scoring import score_warehouse

    columns = (
        SpinnerColumn(),
        TextColumn("pricing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("listings"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("score", total=None)
        return score_warehouse(
            settings,
            query=query,
            input_path=input_path,
            model_uri=model_uri,
            workers=workers,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def print_scoring_run(run: ScoringRun) -> None:
    """One line for the run, one per batch (up to 20)."""
    summary = run.to_dict()
    out.print(
        f"scored [bold]{summary['rows']:,}[/] listings in {summary['batches_scored']:,} batches with {run.model} "
        f"({run.source}) in {run.seconds:.1f}s; {summary['stored']:,} predictions stored "
        f"({summary['imputed']:,} with imputed fields, {summary['fallback']:,} fallback)"
    )
    if not run.batches:
        out.print("  nothing to price: every listing has a price from this model")
    for batch in run.batches[:20]:
        out.print(
            f"  {batch.batch_id}: {batch.stored:,} of {batch.rows:,} listings stored in {batch.seconds:.1f}s"
        )


def ship_with_progress(settings: Settings, follow: bool) -> ShipStats:
    """The shipper with a live line of progress on stderr, stopped cleanly by SIGINT/SIGTERM."""
    import threading

    from price_alchemy.monitoring.shipping import (
        ONCE_GIVE_UP_S,
        Shipper,
        make_sink,
        stop_on_signals,
    )

    # one INFO line per HTTP request from the client would bury the progress display
    logging.getLogger("elastic_transport").setLevel(max(logging.WARNING, logging.getLogger().level))
    sink = make_sink(settings)
    stop = threading.Event()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]ship[/] to {task.fields[sink]}: {task.completed:,} events"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("ship", total=None, sink=sink.name, detail="")

    def show(stats: ShipStats) -> None:
        detail = f"({stats.duplicates:,} already there, {stats.dead_lettered:,} dead-lettered) {stats.state}"
        progress.update(task, completed=stats.shipped, detail=detail)

    shipper = Shipper(settings.request_log_dir, sink, on_progress=show)
    with shipper, progress, stop_on_signals(stop):
        stats = shipper.follow(stop) if follow else shipper.ship_backlog(stop, give_up_after_s=ONCE_GIVE_UP_S)
        show(stats)
    err.print(
        f"shipped {stats.shipped:,} events to {sink.name} ({stats.delivered:,} new, {stats.duplicates:,} "
        f"already there), dead-lettered {stats.dead_lettered:,}, {shipper.reader.pending_bytes():,} bytes pending"
    )
    if stats.dead_lettered:
        err.print(f"[yellow]dead letters:[/] {shipper.dead_letter_dir}")
    return stats
