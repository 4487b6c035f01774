"""Price Alchemy on the command line: generate, ingest, train, predict, score, inspect, demo, serve, ship, monitor, config."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from price_alchemy import runtime
from price_alchemy.cli.extras import require_extra
from price_alchemy.cli.screens import (
    err,
    first_predictions,
    out,
    predictions_table,
    print_batch,
    print_file_scoring,
    print_scoring_run,
    row_progress,
    score_with_progress,
    ship_with_progress,
    train_with_progress,
    write_strict_predictions,
)
from price_alchemy.config import Settings, get_settings
from price_alchemy.errors import PriceAlchemyError
from price_alchemy.params import Params

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
    """A domain exception -> its message on one line (its brackets text, not markup), exit 1."""
    try:
        yield
    except PriceAlchemyError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: " + escape(str(exc)), soft_wrap=True)
        raise typer.Exit(1) from exc


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
        row_progress(f"reading {input.name}") as bar,
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
    print_batch(checked)


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
        result = train_with_progress(c.settings, c.params, listings, source, max_evals, timeout)
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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Leave out every row with a missing or invalid field instead of pricing it."
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per core).")
    ] = None,
) -> None:
    """Price every listing of a train- or test-format file that has an id; flags go to a report beside it."""
    c: Context = ctx.obj
    if strict:
        _predict_strict(c, input, output, model_uri, show)
        return
    from price_alchemy.inference import open_model, price_file

    with (
        _domain_errors(),
        open_model(c.settings, model_uri) as model,
        row_progress(f"pricing {input.name}") as bar,
    ):
        task = bar.add_task("price", total=None)
        result = price_file(
            model, input, output, workers=workers, on_progress=lambda n: bar.update(task, completed=n)
        )
    print_file_scoring(result)
    out.print(
        f"wrote {result.priced:,} predictions to {output} with {result.model}; flags in {result.report}"
    )
    if show and result.priced:
        out.print(predictions_table(*first_predictions(input, output, show), show))
    if not result.priced:
        raise typer.Exit(1)


def _predict_strict(c: Context, input: Path, output: Path, model_uri: str | None, show: int) -> None:
    """``predict --strict``: rows that do not parse or break a listing rule are left out, on stderr."""
    from price_alchemy.data.files import read_listings
    from price_alchemy.inference import load_model, predict_file

    with _domain_errors():
        model, uri = load_model(c.settings, model_uri)
        with row_progress(f"reading {input.name}") as bar:
            task = bar.add_task("read", total=None)
            read = read_listings(input, on_progress=lambda n: bar.update(task, completed=n))
        result = predict_file(model, uri, read, c.params.validation)
    write_strict_predictions(result, output)
    if show and not result.prices.empty:
        out.print(predictions_table(read.listings, result.prices, show))
    if result.prices.empty:
        raise typer.Exit(1)


@app.command()
def score(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Option(help="Price this warehouse SELECT ({listings}) instead of what is open.")
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option("--input", "-i", exists=True, dir_okay=False, help="Price this listings file instead."),
    ] = None,
    model_uri: Annotated[
        str | None, typer.Option(help="A registered version (default: models:/<name>@champion).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per core).")
    ] = None,
) -> None:
    """Price the warehouse listings without a price from the champion into the predictions table."""
    c: Context = ctx.obj
    if query and input:
        err.print("[bold red]error:[/] --query and --input exclude each other")
        raise typer.Exit(2)
    with _domain_errors():
        run = score_with_progress(
            c.settings, query=query, input_path=input, model_uri=model_uri, workers=workers
        )
    print_scoring_run(run)


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
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default: PRICE_ALCHEMY_SERVE_WORKERS, 1)."),
    ] = None,
) -> None:
    """Serve the champion model over REST (uvicorn, N worker processes) until interrupted."""
    require_extra("serve", "serve")
    from price_alchemy.serving.server import run_server

    c: Context = ctx.obj
    with _domain_errors():
        run_server(c.settings, host=host, port=port, workers=workers)


# --- request-log shipping (owner: price_alchemy/monitoring/shipping) ---
@app.command()
def ship(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow/--once", help="Keep shipping new events.")] = False,
) -> None:
    """Ship buffered request events to Elasticsearch (or Logstash) exactly once, in order."""
    require_extra("monitor", "ship")
    c: Context = ctx.obj
    with _domain_errors():
        ship_with_progress(c.settings, follow)


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
    require_extra("monitor", "monitor")
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
            err.print(
                f"[bold red]error:[/] no setting named {escape(repr(get))}; `price-alchemy config` lists them"
            )
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
