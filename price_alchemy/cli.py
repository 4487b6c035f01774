"""The ``price-alchemy`` command line: generate, ingest, train, predict, inspect, demo, serve, ship, monitor."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from price_alchemy import runtime
from price_alchemy.config import Settings, get_settings
from price_alchemy.errors import PriceAlchemyError
from price_alchemy.params import Params

if TYPE_CHECKING:
    import pandas as pd

    from price_alchemy.monitoring.shipping import ShipStats
    from price_alchemy.training.stages import TrainingResult
    from price_alchemy.training.tuning import TrialRecord

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
out = Console()
err = Console(stderr=True)


@dataclass
class Context:
    settings: Settings
    params: Params


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Price suggestions for second-hand listings. Settings come from PRICE_ALCHEMY_* variables."""
    settings = get_settings()
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)]
    )
    settings, params = runtime.start(settings, library_level=logging.INFO if verbose else logging.WARNING)
    ctx.obj = Context(settings, params)


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Turn the package's domain exceptions into a red message and exit code 1."""
    try:
        yield
    except PriceAlchemyError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc


def _row_progress(label: str) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn(label),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


InputPath = Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="Listings file.")]


@app.command()
def generate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write (.tsv/.csv/.parquet[.gz|.zip]).")
    ],
    rows: Annotated[int, typer.Option(min=1, help="Number of listings.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    start_id: Annotated[int, typer.Option(help="First listing id.")] = 0,
    test_format: Annotated[bool, typer.Option(help="Write Kaggle test format (test_id, no price).")] = False,
) -> None:
    """Write synthetic Mercari-like listings."""
    from price_alchemy.data.files import write_listings
    from price_alchemy.data.synthetic import generate_listings

    with _domain_errors():
        frame = generate_listings(rows, seed=seed, start_id=start_id, with_price=not test_format)
        path = write_listings(frame, output, id_column="test_id" if test_format else "train_id")
    out.print(f"wrote {len(frame):,} synthetic listings to {path}")


@app.command()
def ingest(
    ctx: typer.Context,
    input: InputPath,
    batch_id: Annotated[
        str | None, typer.Option(help="Batch id (default: file name + content hash).")
    ] = None,
) -> None:
    """Read, validate and load a listings file into the warehouse; report the quarantine."""
    from price_alchemy.data.warehouse import open_warehouse
    from price_alchemy.ingest import ingest_file

    c: Context = ctx.obj
    with (
        _domain_errors(),
        open_warehouse(c.settings) as warehouse,
        _row_progress(f"reading {input.name}") as bar,
    ):
        task = bar.add_task("read", total=None)
        checked = ingest_file(
            input,
            warehouse,
            c.params.validation,
            c.settings.reports_dir,
            batch_id=batch_id,
            on_progress=lambda n: bar.update(task, completed=n),
        )
    _print_batch(checked)


def _print_batch(checked: object) -> None:
    from price_alchemy.ingest import CheckedBatch

    assert isinstance(checked, CheckedBatch)
    out.print(
        f"batch [bold]{checked.batch_id}[/]: {checked.read.n_records:,} records, "
        f"{len(checked.valid):,} loaded, {len(checked.quarantine):,} quarantined "
        f"({checked.bad_fraction:.2%}); validation {'PASSED' if checked.passed else 'FAILED'}"
    )
    for reason, count in checked.reason_counts().head(8).items():
        out.print(f"  quarantined: {count:>6,}  {reason}")
    for kind, path in checked.report_paths.items():
        out.print(f"  report ({kind}): {path}")


@app.command()
def train(
    ctx: typer.Context,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help="Train from this file (default: the warehouse).",
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="Warehouse SELECT; {listings} names the listings table.")
    ] = None,
    max_evals: Annotated[int | None, typer.Option(min=1, help="Tuning trials (default from params).")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="Tuning budget in seconds.")] = None,
) -> None:
    """Tune, train, evaluate, register and (per the champion rule) promote a model."""
    from price_alchemy.tasks import training_listings

    c: Context = ctx.obj
    with _domain_errors():
        listings, source = training_listings(c.settings, c.params, input_path=input, query=query)
        out.print(f"training on {len(listings):,} validated listings from {source}")
        result = _train_with_progress(c, listings, source, max_evals, timeout)
    out.print(
        f"[bold]model {c.settings.model_name} v{result.model_version}[/] (run {result.run_id}) "
        f"in {result.seconds:.0f}s, {result.n_trials} trials"
    )
    out.print(
        f"  test RMSLE {result.test_metrics['rmsle']:.4f}  (rules baseline {result.baseline_metrics['rmsle']:.4f}); "
        f"RMSE {result.test_metrics['rmse']:.2f}  MAE {result.test_metrics['mae']:.2f}  R2 {result.test_metrics['r2']:.3f}"
    )
    decision = result.decision
    verdict = "[green]PROMOTED to champion[/]" if decision.promoted else "[yellow]not promoted[/]"
    out.print(f"  promotion: {verdict}: {decision.reason}")


def _train_with_progress(
    c: Context, listings: pd.DataFrame, source: str, max_evals: int | None, timeout: float | None
) -> TrainingResult:
    from price_alchemy.training.stages import run_training

    params = c.params.with_budget(max_evals, timeout)
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
            c.settings,
            params,
            source=source,
            on_stage=lambda message: bar.console.log(message),
            on_trial=on_trial,
        )


@app.command()
def predict(
    ctx: typer.Context,
    input: InputPath,
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write: <id column>,price.")],
    model_uri: Annotated[
        str | None, typer.Option(help="MLflow model URI (default: models:/<name>@champion).")
    ] = None,
    show: Annotated[
        int, typer.Option(min=0, metavar="N", help="Also print the first N predictions as a table.")
    ] = 0,
) -> None:
    """Predict prices for a train- or test-format file; bad rows are reported on stderr."""
    from price_alchemy.data.files import read_listings
    from price_alchemy.inference import load_model, predict_file

    c: Context = ctx.obj
    with _domain_errors():
        model, uri = load_model(c.settings, model_uri)
        with _row_progress(f"reading {input.name}") as bar:
            task = bar.add_task("read", total=None)
            read = read_listings(input, on_progress=lambda n: bar.update(task, completed=n))
        result = predict_file(model, uri, read, c.params.validation)
    for row in result.rejected.itertuples():
        where = (
            f"line {row.line}" if row.line == row.line and row.line is not None else f"id {row.listing_id}"
        )
        err.print(f"rejected {where}: {row.reason}")
    output.parent.mkdir(parents=True, exist_ok=True)
    result.prices.to_csv(output, index=False)
    out.print(
        f"wrote {len(result.prices):,} predictions to {output} with {uri}; {len(result.rejected):,} rows rejected"
    )
    if show and not result.prices.empty:
        out.print(_predictions_table(read.listings, result.prices, show))
    if result.prices.empty:
        raise typer.Exit(1)


def _predictions_table(listings: pd.DataFrame, prices: pd.DataFrame, limit: int) -> Table:
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


@app.command()
def quarantine(
    ctx: typer.Context,
    batch_id: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Show quarantined rows and their reasons."""
    from price_alchemy.data.warehouse import open_warehouse

    c: Context = ctx.obj
    with _domain_errors(), open_warehouse(c.settings) as warehouse:
        rows = warehouse.read_quarantine(batch_id=batch_id)
    table = Table("batch", "stage", "line", "listing_id", "reason", title=f"{len(rows):,} quarantined rows")
    for row in rows.head(limit).itertuples():
        table.add_row(str(row.batch_id), str(row.stage), str(row.line), str(row.listing_id), str(row.reason))
    out.print(table)


@app.command()
def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=200, help="Synthetic listings to generate.")] = 10_000,
    max_evals: Annotated[int | None, typer.Option(min=1)] = None,
    timeout: Annotated[float | None, typer.Option(min=1)] = None,
) -> None:
    """The main job end to end: synthetic data -> warehouse -> validation -> training -> predictions."""
    c: Context = ctx.obj
    folder = c.settings.home / "demo"
    listings, new = folder / "listings.tsv", folder / "new_listings.tsv"
    out.rule("1. generate synthetic listings")
    generate(output=listings, rows=rows, seed=0, start_id=0, test_format=False)
    generate(output=new, rows=10, seed=1, start_id=10_000_000, test_format=True)
    out.rule("2. ingest into the warehouse (validated)")
    ingest(ctx, input=listings, batch_id=None)
    out.rule("3. tune, train, register, promote")
    train(ctx, input=None, query=None, max_evals=max_evals, timeout=timeout)
    out.rule("4. predict new listings with the champion")
    predictions = folder / "predictions.csv"
    predict(ctx, input=new, output=predictions, model_uri=None, show=10)
    out.print(f"MLflow UI: mlflow ui --backend-store-uri {c.settings.tracking_uri}")


# --- serving (owner: price_alchemy/serving) ---
@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface (default: PRICE_ALCHEMY_SERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PRICE_ALCHEMY_SERVE_PORT).")] = None,
) -> None:
    """Serve the champion model over REST (uvicorn) until interrupted."""
    from price_alchemy.serving.server import run_server

    c: Context = ctx.obj
    with _domain_errors():
        run_server(c.settings, host=host, port=port)


# --- request-log shipping (owner: price_alchemy/monitoring/shipping) ---
@app.command()
def ship(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow/--once", help="Keep shipping new events.")] = False,
) -> None:
    """Ship buffered request events to Elasticsearch (or Logstash) exactly once, in order."""
    c: Context = ctx.obj
    with _domain_errors():
        _ship_with_progress(c.settings, follow)


def _ship_with_progress(settings: Settings, follow: bool) -> ShipStats:
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


# --- drift monitoring (owner: price_alchemy/monitoring/drift*) ---
@app.command()
def monitor(
    ctx: typer.Context,
    window_hours: Annotated[
        float | None,
        typer.Option(
            min=0.01, help="Recent window of requests to compare (default: monitoring.window_hours)."
        ),
    ] = None,
) -> None:
    """Compare recent requests with the champion's training profile; report drift (exit 3 if drifted)."""
    from price_alchemy.monitoring.drift_job import run_monitor

    c: Context = ctx.obj
    with _domain_errors():
        report = run_monitor(c.settings, c.params, window_hours=window_hours)
    out.print(report.summary())
    if report.drifted:
        raise typer.Exit(3)


# --- resolved settings, for people and for scripts/*.sh (owner: price_alchemy/settings_view) ---
@app.command("config")
def show_config(
    ctx: typer.Context,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell", help='Print quoted `export NAME=value` lines: eval "$(price-alchemy config --shell)".'
        ),
    ] = False,
    get: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Print one value, e.g. serve_port, tracking_uri, airflow_home."),
    ] = None,
) -> None:
    """Show the resolved settings and the paths derived from them; secrets are never printed."""
    from rich.text import Text

    from price_alchemy import settings_view

    c: Context = ctx.obj
    if shell and get is not None:
        err.print("[bold red]error:[/] --shell and --get exclude each other")
        raise typer.Exit(2)
    if shell:  # plain stdout, not Rich: no line wrapping or markup in what a shell evaluates
        typer.echo(settings_view.shell_script(settings_view.shell_exports(c.settings)), nl=False)
        return
    rows = settings_view.settings_rows(c.settings)
    if get is not None:
        row = settings_view.lookup(rows, get)
        if row is None:
            err.print(f"[bold red]error:[/] no setting named {get!r}; `price-alchemy config` lists them")
            raise typer.Exit(2)
        if row.secret:
            err.print(f"[bold red]error:[/] {row.name} is a secret and is never printed")
            raise typer.Exit(2)
        typer.echo(row.value or "")
        return
    table = Table("setting", "variable", "value", title="Resolved settings (secrets masked)")
    for row in rows:
        value = Text("unset", style="dim") if row.value is None else Text(row.value)
        table.add_row(row.name, row.variable or Text("(derived)", style="dim"), value)
    out.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
