"""Batch scoring into the warehouse: listings without a price from the champion get one, in ``predictions``.

What is scored (one *scoring batch* each, written atomically under its key):

- by default, every listing batch of the warehouse with a listing that has no prediction from the
  model version newer than its ingestion (:meth:`~price_alchemy.data.warehouse.Warehouse.unscored_batches`):
  a new batch, a re-ingested one, or every batch after a new champion. The whole batch is priced
  again and replaces that (batch, model, version) key, so a rerun leaves the table as it was;
- a ``query`` (a SELECT over ``{listings}`` returning ``listing_id`` and the feature columns):
  scoring batch ``query-<hash of the query>``;
- an ``input_path`` (a listings file, read leniently): scoring batch ``<file stem>-<content hash>``,
  the id ingestion would give it.

Memory stays flat whatever the size: a batch is first copied out of the warehouse into a local
Parquet snapshot in chunks (so the warehouse, a DuckDB file one process at a time, is held only
for seconds), priced chunk by chunk on every core (:class:`~price_alchemy.scorer.Scorer`), written
to a local Parquet file of predictions, and loaded by one atomic replace. ``scored_at`` is the time
the snapshot was taken: a batch re-ingested after it counts as unscored again.

Each listing is parsed as for files (:mod:`price_alchemy.data.repair`): the warehouse holds
validated listings, but a query may return anything; what is imputed goes to the ``flags`` column
(``imputed:<fields>``, ``fallback``), and a fallback price has no range.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from price_alchemy import schema
from price_alchemy.config import Settings
from price_alchemy.data.files import ListingChunk, stream_listings
from price_alchemy.data.repair import FALLBACK, lenient_canonical
from price_alchemy.data.warehouse import Warehouse, open_warehouse
from price_alchemy.data.warehouse.base import PREDICTION_VALUES, STREAM_ROWS
from price_alchemy.errors import ModelNotFoundError, WarehouseError
from price_alchemy.inference import open_model
from price_alchemy.scorer import Scorer, ScoringModel, SeenIds

log = logging.getLogger(__name__)

#: ``on_progress(done, total)``: listings priced so far, and the total when it is known.
ScoreProgress = Callable[[int, "int | None"], None]
_SNAPSHOT = pa.schema(
    [
        pa.field(schema.LISTING_ID, pa.int64()),
        *(
            pa.field(c, pa.int64() if c in ("item_condition_id", "shipping") else pa.string())
            for c in schema.FEATURE_COLUMNS
        ),
    ]
)
_PREDICTIONS = pa.schema(
    [
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("price_low", pa.float64()),
        pa.field("price_high", pa.float64()),
        pa.field("flags", pa.string()),
    ]
)
#: Batches listed one by one in a run's summary (the totals always count all of them).
SUMMARY_BATCHES = 50


@dataclass
class BatchScore:
    """One scoring batch: listings read, priced by the model, by the fallback, stored."""

    batch_id: str
    rows: int = 0
    imputed: int = 0
    fallback: int = 0
    unpriced: int = 0
    duplicates: int = 0
    skipped: int = 0
    stored: int = 0
    seconds: float = 0.0
    scored_at: str = ""


@dataclass
class ScoringRun:
    """What a scoring run did (JSON-able: the return value of the Airflow task)."""

    model: str
    model_name: str
    model_version: str
    source: str
    batches: list[BatchScore] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.batches)

    @property
    def stored(self) -> int:
        return sum(b.stored for b in self.batches)

    def to_dict(self) -> dict[str, Any]:
        totals = {
            k: sum(getattr(b, k) for b in self.batches)
            for k in ("rows", "imputed", "fallback", "unpriced", "stored")
        }
        return {
            "model": self.model,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "source": self.source,
            "batches_scored": len(self.batches),
            **totals,
            "seconds": round(self.seconds, 2),
            "rows_per_s": round(self.rows / self.seconds, 1) if self.seconds > 0 else None,
            "batches": [asdict(b) | {"seconds": round(b.seconds, 2)} for b in self.batches[:SUMMARY_BATCHES]],
        }


def query_batch_id(query: str) -> str:
    return "query-" + hashlib.sha256(query.strip().encode()).hexdigest()[:12]


def score_warehouse(
    settings: Settings,
    *,
    query: str | None = None,
    input_path: Path | None = None,
    model_uri: str | None = None,
    workers: int | None = None,
    chunk_rows: int = STREAM_ROWS,
    on_progress: ScoreProgress | None = None,
) -> ScoringRun:
    """Price what needs a price (see the module docstring) with the champion, or ``model_uri``."""
    if query and input_path:
        raise ValueError("score either a query or an input file, not both")
    started = time.perf_counter()
    with ExitStack() as stack:
        model = stack.enter_context(open_model(settings, model_uri))
        if model.version is None:
            raise ModelNotFoundError(f"{model.uri}: warehouse predictions need a registered model version")
        scorer = stack.enter_context(Scorer(model, workers=workers))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="price-alchemy-scoring-")))
        source = "file" if input_path else "query" if query else "warehouse"
        run = ScoringRun(model.label, model.model_name, model.version, source)
        progress = _Progress(on_progress)

        def score(batch_id: str, chunks: Iterator[ListingChunk], scored_at: datetime) -> None:
            batch = _score(batch_id, chunks, scorer, model, tmp / "predictions.parquet", progress)
            batch.scored_at = scored_at.isoformat()
            if batch.rows:
                with open_warehouse(settings) as warehouse:
                    batch.stored = warehouse.load_predictions(
                        tmp / "predictions.parquet",
                        batch_id=batch_id,
                        model_name=model.model_name,
                        model_version=str(model.version),
                        scored_at=scored_at,
                    )
            run.batches.append(batch)

        if input_path is not None:
            from price_alchemy.ingest import batch_id_for

            scored_at = datetime.now(UTC)
            with stream_listings(input_path, chunk_rows=chunk_rows) as stream:
                score(batch_id_for(input_path), stream.chunks, scored_at)
        elif query:
            scored_at = _snapshot(settings, tmp, lambda wh: wh.iter_query(query, chunk_rows=chunk_rows))
            score(query_batch_id(query), _read_snapshot(tmp, chunk_rows), scored_at)
        else:
            with open_warehouse(settings) as warehouse:
                todo = warehouse.unscored_batches(model.model_name, model.version)
            progress.total = int(todo["rows"].sum()) if len(todo) else 0
            log.info(
                "%d batches (%d listings) have listings without a price from %s",
                len(todo),
                progress.total,
                model.label,
            )
            for batch_id in todo["batch_id"].astype(str):
                scored_at = _snapshot(settings, tmp, _batch_rows(batch_id, chunk_rows))
                score(batch_id, _read_snapshot(tmp, chunk_rows), scored_at)
    run.seconds = time.perf_counter() - started
    log.info(
        "scored %d listings in %d batches with %s in %.1fs (%.0f rows/s); %d predictions stored",
        run.rows,
        len(run.batches),
        model.label,
        run.seconds,
        run.rows / run.seconds if run.seconds else 0.0,
        run.stored,
    )
    return run


class _Progress:
    """Progress to the caller and, every ``LOG_EVERY`` rows, to the log (the Airflow task log)."""

    LOG_EVERY = 100_000

    def __init__(self, callback: ScoreProgress | None) -> None:
        self.callback = callback
        self.total: int | None = None
        self.done = self._logged = 0
        self.started = time.perf_counter()

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.done - self._logged >= self.LOG_EVERY:
            self._logged = self.done
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            share = f" of {self.total:,} ({self.done / self.total:.0%})" if self.total else ""
            log.info("priced %s listings%s, %.0f rows/s", f"{self.done:,}", share, rate)


def _batch_rows(batch_id: str, chunk_rows: int) -> Callable[[Warehouse], Iterator[pd.DataFrame]]:
    def rows(warehouse: Warehouse) -> Iterator[pd.DataFrame]:
        return warehouse.iter_listings(batch_ids=[batch_id], chunk_rows=chunk_rows)

    return rows


def _snapshot(settings: Settings, tmp: Path, rows: Callable[[Warehouse], Iterator[pd.DataFrame]]) -> datetime:
    """Copy the rows out of the warehouse into ``tmp/snapshot.parquet``; the time it started."""
    taken = datetime.now(UTC)
    with (
        open_warehouse(settings) as warehouse,
        pq.ParquetWriter(tmp / "snapshot.parquet", _SNAPSHOT) as writer,
    ):
        for frame in rows(warehouse):
            missing = [c for c in (schema.LISTING_ID, *schema.FEATURE_COLUMNS) if c not in frame.columns]
            if missing:
                raise WarehouseError(
                    f"the scoring query must return {schema.LISTING_ID} and {', '.join(missing)}"
                )
            writer.write_table(pa.Table.from_pandas(frame, schema=_SNAPSHOT, preserve_index=False))
    return taken


def _read_snapshot(tmp: Path, chunk_rows: int) -> Iterator[ListingChunk]:
    snapshot = pq.ParquetFile(tmp / "snapshot.parquet")
    for batch in snapshot.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        raw = {name: frame[name].to_numpy(dtype=object) for name in frame.columns}
        yield lenient_canonical(raw, len(frame), schema.LISTING_ID)


def _score(
    batch_id: str,
    chunks: Iterator[ListingChunk],
    scorer: Scorer,
    model: ScoringModel,
    output: Path,
    progress: _Progress,
) -> BatchScore:
    """Price every chunk and write the batch's predictions to the Parquet file ``output``."""
    started = time.perf_counter()
    result = BatchScore(batch_id)
    seen = SeenIds()

    def frames() -> Iterator[tuple[tuple[ListingChunk, np.ndarray], pd.DataFrame]]:
        for chunk in chunks:
            dup = seen.duplicated(chunk.listings[schema.LISTING_ID].to_numpy())
            model_rows = ~dup
            model_rows[chunk.fallback] = False
            yield (chunk, dup), chunk.listings[model_rows]

    with pq.ParquetWriter(output, _PREDICTIONS) as writer:
        for (chunk, dup), prices in scorer.map(frames()):
            rows = _prediction_rows(chunk, dup, prices, model)
            writer.write_table(
                pa.Table.from_pandas(rows[list(PREDICTION_VALUES)], schema=_PREDICTIONS, preserve_index=False)
            )
            fallback = np.zeros(len(chunk.listings), dtype=bool)
            fallback[chunk.fallback] = True
            result.rows += len(chunk.listings)
            result.duplicates += int(dup.sum())
            result.skipped += len(chunk.skipped)
            result.fallback += int((fallback & ~dup).sum())
            result.imputed += int(rows["flags"].fillna("").str.startswith("imputed").sum())
            result.unpriced += int((fallback & ~dup).sum()) if model.fallback_price is None else 0
            progress.advance(len(chunk.listings))
    result.seconds = time.perf_counter() - started
    log.info(
        "batch %s: %d listings priced in %.1fs (%d imputed, %d fallback, %d duplicates dropped)",
        batch_id,
        result.rows,
        result.seconds,
        result.imputed,
        result.fallback,
        result.duplicates,
    )
    return result


def _prediction_rows(
    chunk: ListingChunk, dup: np.ndarray, prices: np.ndarray, model: ScoringModel
) -> pd.DataFrame:
    """:data:`PREDICTION_VALUES` of a chunk's listings that get a price (not duplicates, not unpriced)."""
    n = len(chunk.listings)
    fallback = np.zeros(n, dtype=bool)
    fallback[chunk.fallback] = True
    by_model = ~dup & ~fallback
    price = np.full(n, np.nan)
    price[by_model] = np.round(prices, 2)
    low, high = np.full(n, np.nan), np.full(n, np.nan)
    if model.interval is not None and by_model.any():
        lows, highs = model.interval.bounds(prices, chunk.listings[by_model])
        low[by_model], high[by_model] = np.round(lows, 2), np.round(highs, 2)
    if model.fallback_price is not None:
        price[fallback & ~dup] = model.fallback_price
    flags = np.full(n, None, dtype=object)
    for position, flag, fields in chunk.flags[["position", "flag", "fields"]].itertuples(index=False):
        flags[position] = FALLBACK if flag == FALLBACK else f"imputed:{fields}"
    keep = ~dup & ~np.isnan(price)
    return pd.DataFrame(
        {
            "listing_id": chunk.listings[schema.LISTING_ID].to_numpy()[keep],
            "price": price[keep],
            "price_low": low[keep],
            "price_high": high[keep],
            "flags": pd.Series(flags[keep], dtype=object),
        }
    )
