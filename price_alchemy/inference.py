"""Batch prediction with a registered model: fetch it once, with what travels with it.

:func:`open_model` brings a model version's files into a temporary folder together with the price
interval and the fallback price of its training profile; :class:`price_alchemy.scorer.Scorer`
prices frames with it on every core.

The **fallback price** for a listing without usable content is the global level of the rules
baseline as the model knows it: the median of the prices the model predicted for its own training
rows, which training records in the version's profile (``prediction_quantiles``). A model without a
profile has no fallback; listings that need one are then left out, with that reason.

:func:`price_file` prices every listing of a file that has an id (``price-alchemy predict``):
fields that are missing or invalid are taken as unknown and flagged
(:mod:`price_alchemy.data.repair`), and the flags go to a report beside the output.
:func:`predict_file` is the strict path (``predict --strict``): rows that do not parse or break a
listing rule are left out.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.data.files import ListingChunk, ReadResult, stream_listings
from price_alchemy.data.repair import DUPLICATE, FALLBACK, IMPUTED, SKIPPED
from price_alchemy.errors import ModelNotFoundError
from price_alchemy.model_files import check_model_dir
from price_alchemy.params import ValidationParams
from price_alchemy.price_range import PriceInterval
from price_alchemy.schema import FEATURE_COLUMNS, LISTING_ID
from price_alchemy.scorer import Scorer, ScoringModel, SeenIds
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


# --- a model for batch scoring -------------------------------------------------------------------
def fallback_price(profile: dict[str, Any] | None) -> float | None:
    """The median predicted training price in a profile (``prediction_quantiles`` 5/25/50/75/95%)."""
    quantiles = (profile or {}).get("prediction_quantiles")
    if not isinstance(quantiles, list) or len(quantiles) != 5:
        return None
    try:
        value = float(quantiles[2])
    except (TypeError, ValueError):
        return None
    return round(value, 2) if np.isfinite(value) and value >= 0 else None


@contextmanager
def open_model(settings: Settings, model_uri: str | None = None) -> Iterator[ScoringModel]:
    """The model behind ``model_uri`` (default: the champion) in a temporary folder, for the block's time.

    A registry URI (``models:/<name>@<alias>`` or ``models:/<name>/<version>``) is resolved to one
    version first, so every worker loads the same files even if the alias moves meanwhile.
    """
    mlflow_store.configure(settings)
    uri = model_uri or mlflow_store.resolve_model_uri(settings)
    with tempfile.TemporaryDirectory(prefix="price-alchemy-model-") as tmp:
        try:
            registered = mlflow_store.registry_version(settings, uri)
            if registered is not None:
                model_dir, info, profile = mlflow_store.download_version(
                    settings, registered.version, Path(tmp)
                )
                model = ScoringModel(
                    uri=uri,
                    label=info.label,
                    model_name=info.name,
                    version=info.version,
                    model_dir=model_dir,
                    digest=info.digest,
                    interval=None if profile is None else PriceInterval.from_profile(profile),
                    fallback_price=fallback_price(profile),
                )
            else:
                log.warning(
                    "scoring with %s: no registered digest (format and trusted types still checked)", uri
                )
                model_dir = mlflow_store.download(settings, uri, Path(tmp))
                check_model_dir(model_dir, uri)
                profile = _run_profile(settings, uri)
                model = ScoringModel(
                    uri=uri,
                    label=uri,
                    model_name=uri,
                    version=None,
                    model_dir=model_dir,
                    digest=None,
                    interval=None if profile is None else PriceInterval.from_profile(profile),
                    fallback_price=fallback_price(profile),
                )
        except ModelNotFoundError:
            raise
        except Exception as exc:  # the store down, an unknown version: one clear error
            raise ModelNotFoundError(f"cannot fetch model {uri}: {type(exc).__name__}: {exc}") from exc
        if model.fallback_price is None:
            log.warning(
                "%s has no training profile: listings without content cannot get a fallback", model.label
            )
        yield model


def _run_profile(settings: Settings, uri: str) -> dict[str, Any] | None:
    if not uri.startswith("runs:/"):
        return None
    try:
        return mlflow_store.run_profile(settings, uri.removeprefix("runs:/").split("/", 1)[0])
    except ModelNotFoundError:
        return None


# --- a file priced leniently: every listing with an id gets a price -------------------------------
@dataclass(frozen=True)
class FileScoring:
    """What :func:`price_file` did: counts, the files written, the model."""

    source: str
    output: Path
    report: Path
    model: str
    id_column: str
    priced: int
    imputed: int
    fallback: int
    skipped: int
    duplicates: int
    unpriced: int
    by_field: dict[str, int]
    seconds: float

    @property
    def records(self) -> int:
        """Records read: priced, duplicates, left out."""
        return self.priced + self.duplicates + self.skipped + self.unpriced


def report_path(output: Path) -> Path:
    """Where the flags of ``output`` go: ``predictions.csv`` -> ``predictions.flags.csv``."""
    return output.with_name(f"{output.stem}.flags{output.suffix or '.csv'}")


def price_file(
    model: ScoringModel,
    path: Path,
    output: Path,
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> FileScoring:
    """Price every listing of ``path`` that has an id; Kaggle CSV to ``output``, flags beside it.

    ``output`` gets ``<id column>,price``, one row per id (the first record of a duplicated id), in
    file order; :func:`report_path` gets one row per flagged record: ``<id column>, line, flag,
    fields, reason`` (``imputed``, ``fallback``, ``duplicate``, ``skipped`` without an id, or
    ``unpriced`` when a fallback was needed and the model has none). Both are written beside their
    targets and renamed into place at the end.
    """
    started = time.perf_counter()
    report = report_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    parts = [output.with_name(output.name + ".part"), report.with_name(report.name + ".part")]
    seen = SeenIds()
    counts = dict.fromkeys(
        ("priced", "imputed", "fallback", "skipped", "duplicates", "unpriced", "records"), 0
    )
    by_field: dict[str, int] = {}
    with (
        stream_listings(path) as stream,
        Scorer(model, workers=workers) as scorer,
        parts[0].open("w", encoding="utf-8", newline="") as out,
        parts[1].open("w", encoding="utf-8", newline="") as flags_out,
    ):
        id_column = stream.id_column
        out.write(f"{id_column},price\n")
        flags_out.write(f"{id_column},line,flag,fields,reason\n")

        def frames() -> Iterator[tuple[tuple[ListingChunk, np.ndarray], pd.DataFrame]]:
            for chunk in stream.chunks:
                dup = seen.duplicated(chunk.listings[LISTING_ID].to_numpy())
                model_rows = ~dup
                model_rows[chunk.fallback] = False
                yield (chunk, dup), chunk.listings[model_rows]

        for (chunk, dup), prices in scorer.map(frames()):
            rows, flags = _priced_rows(chunk, dup, prices, model, id_column)
            rows.to_csv(out, header=False, index=False, lineterminator="\n")
            flags.to_csv(flags_out, header=False, index=False, lineterminator="\n")
            for flag, n in flags["flag"].value_counts().items():
                counts[_COUNTERS[str(flag)]] += int(n)
            for fields in flags.loc[flags["flag"] == IMPUTED, "fields"]:
                for field in str(fields).split(";"):
                    by_field[field] = by_field.get(field, 0) + 1
            counts["priced"] += len(rows)
            counts["records"] += len(chunk.listings) + len(chunk.skipped)
            if on_progress is not None:
                on_progress(counts["records"])
    for part, target in zip(parts, (output, report), strict=True):
        part.replace(target)
    result = FileScoring(
        source=str(path),
        output=output,
        report=report,
        model=model.label,
        id_column=id_column,
        priced=counts["priced"],
        imputed=counts["imputed"],
        fallback=counts["fallback"],
        skipped=counts["skipped"],
        duplicates=counts["duplicates"],
        unpriced=counts["unpriced"],
        by_field=dict(sorted(by_field.items(), key=lambda kv: -kv[1])),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "priced %d listings of %s with %s in %.1fs (%d imputed, %d fallback, %d left out without an id)",
        result.priced,
        path,
        model.label,
        result.seconds,
        result.imputed,
        result.fallback,
        result.skipped,
    )
    return result


_COUNTERS = {
    IMPUTED: "imputed",
    FALLBACK: "fallback",
    SKIPPED: "skipped",
    DUPLICATE: "duplicates",
    "unpriced": "unpriced",
}


def _priced_rows(
    chunk: ListingChunk, dup: np.ndarray, prices: np.ndarray, model: ScoringModel, id_column: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chunk's output rows (in order) and its flags (imputed, fallback, duplicate, skipped, unpriced)."""
    n = len(chunk.listings)
    ids = chunk.listings[LISTING_ID].to_numpy()
    price = np.full(n, np.nan)
    fallback = np.zeros(n, dtype=bool)
    fallback[chunk.fallback] = True
    model_rows = ~dup & ~fallback
    price[model_rows] = np.round(prices, 2)
    if model.fallback_price is not None:
        price[fallback & ~dup] = model.fallback_price
    keep = ~dup & ~np.isnan(price)
    rows = pd.DataFrame({id_column: ids[keep], "price": price[keep]})

    flags = chunk.flags[~dup[chunk.flags["position"].to_numpy(dtype=np.int64)]].copy()
    unpriced = flags["flag"].eq(FALLBACK) & (model.fallback_price is None)
    flags.loc[unpriced, "flag"] = "unpriced"
    flags.loc[unpriced, "reason"] = (
        flags.loc[unpriced, "reason"] + f"; no fallback price: {model.label} has no training profile"
    )
    lines = chunk.lines if chunk.lines is not None else np.full(n, -1)
    duplicates = pd.DataFrame(
        {
            "position": np.flatnonzero(dup),
            LISTING_ID: ids[dup],
            "line": [int(v) if v >= 0 else None for v in lines[dup]],
            "flag": DUPLICATE,
            "fields": "",
            "reason": f"duplicate {id_column}: the first record with this id is priced",
        }
    )
    skipped = chunk.skipped.assign(**{LISTING_ID: None, "flag": SKIPPED, "fields": "", "position": -1})
    every = pd.concat([f for f in (flags, duplicates, skipped) if not f.empty] or [flags], ignore_index=True)
    every = every.assign(_order=every["line"].fillna(-1).astype(np.int64)).sort_values(
        ["_order", "position"], kind="stable"
    )
    every = every.rename(columns={LISTING_ID: id_column})
    return rows, every[[id_column, "line", "flag", "fields", "reason"]]
