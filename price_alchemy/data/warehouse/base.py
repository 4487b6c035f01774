"""The warehouse contract shared by the DuckDB and BigQuery backends.

A warehouse holds three tables: ``listings`` (the canonical listing columns plus ``batch_id`` and
``ingested_at``), ``listings_quarantine`` (rows rejected by ingestion or validation) and
``predictions`` (batch prices: :data:`PREDICTION_COLUMNS`). Every write replaces its key -- a batch
of listings or quarantine, a (batch, model name, model version) of predictions -- **atomically**:
readers see the old rows or the new ones, never a mix or nothing, and concurrent writes of the same
key leave exactly one copy (DuckDB: one transaction, retried on a write conflict; BigQuery: a load
job into a staging table, then one ``MERGE``). A retried Airflow task therefore leaves one copy.
Frame preparation and result coercion live here so both backends return identical frames; the
backends only move data. Large reads stream in chunks (:meth:`Warehouse.iter_listings`,
:meth:`Warehouse.iter_query`), so memory does not grow with a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import pandas as pd

from price_alchemy import schema
from price_alchemy.errors import WarehouseError

INT_COLUMNS = ("listing_id", "item_condition_id", "shipping")
#: The ``predictions`` table: one row per listing, scoring batch and model version. ``flags`` is
#: null for a listing priced as read, else ``imputed:<fields>`` or ``fallback``; the range is null
#: for a fallback price (no calibrated range) or a model without an interval.
PREDICTION_COLUMNS = (
    "listing_id",
    "batch_id",
    "price",
    "price_low",
    "price_high",
    "model_name",
    "model_version",
    "scored_at",
    "flags",
)
#: What a scorer hands to :meth:`Warehouse.load_predictions` (the key and ``scored_at`` are added).
PREDICTION_VALUES = ("listing_id", "price", "price_low", "price_high", "flags")
#: Rows per chunk of a streamed read.
STREAM_ROWS = 50_000
#: Quarantine columns that may be missing (a row that could not be parsed has no listing id).
NULLABLE_INT_QUARANTINE = ("line", "listing_id")
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


class Warehouse(ABC):
    """Batch-idempotent storage of listings and quarantined rows.

    Use as a context manager (``with open_warehouse(settings) as wh: ...``) so the connection is
    closed even when a task fails.
    """

    @abstractmethod
    def load_batch(self, listings: pd.DataFrame, batch_id: str) -> int:
        """Replace batch ``batch_id`` in ``listings`` with this canonical frame; return its row count."""

    @abstractmethod
    def load_quarantine(self, rejects: pd.DataFrame, batch_id: str) -> int:
        """Replace batch ``batch_id``'s quarantined rows (an empty frame just clears them)."""

    @abstractmethod
    def read_listings(
        self, *, batch_ids: Sequence[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Canonical columns plus ``batch_id``, ordered by (batch_id, listing_id)."""

    @abstractmethod
    def read_quarantine(self, *, batch_id: str | None = None) -> pd.DataFrame:
        """Quarantined rows with ``quarantined_at``, ordered by (batch_id, line, listing_id)."""

    @abstractmethod
    def batches(self) -> pd.DataFrame:
        """One row per stored batch: ``batch_id``, ``rows``, ``ingested_at``; newest first."""

    @abstractmethod
    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only SELECT written with ``{listings}`` / ``{quarantine}`` placeholders.

        The SQL passes :func:`~price_alchemy.data.warehouse.query_check.render_query` first: one
        SELECT reading only these two tables, sent as written (placeholders substituted).
        """

    @abstractmethod
    def iter_listings(
        self, *, batch_ids: Sequence[str] | None = None, chunk_rows: int = STREAM_ROWS
    ) -> Iterator[pd.DataFrame]:
        """:meth:`read_listings` in chunks of at most ``chunk_rows``, same order, same columns."""

    @abstractmethod
    def iter_query(self, sql: str, *, chunk_rows: int = STREAM_ROWS) -> Iterator[pd.DataFrame]:
        """:meth:`query` in chunks of at most ``chunk_rows`` (same checks before anything runs)."""

    @abstractmethod
    def load_predictions(
        self,
        predictions: pd.DataFrame | Path,
        *,
        batch_id: str,
        model_name: str,
        model_version: str,
        scored_at: datetime,
    ) -> int:
        """Replace the predictions of (batch, model name, version) with these rows; return their count.

        ``predictions`` holds :data:`PREDICTION_VALUES`, as a frame or a Parquet file (streamed, so
        a batch of any size loads in bounded memory).
        """

    @abstractmethod
    def read_predictions(
        self, *, batch_id: str | None = None, model_version: str | None = None
    ) -> pd.DataFrame:
        """:data:`PREDICTION_COLUMNS`, ordered by (batch_id, model_name, model_version, listing_id)."""

    @abstractmethod
    def unscored_batches(self, model_name: str, model_version: str) -> pd.DataFrame:
        """Listing batches with a listing that has no prediction of this version newer than its ingestion.

        Columns ``batch_id``, ``rows`` (listings in the batch) and ``unscored``; ordered by batch_id.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_batch_id(batch_id: str) -> str:
    """Refuse empty or non-string batch ids: they key every idempotent write."""
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise WarehouseError(f"batch_id must be a non-empty string, got {batch_id!r}")
    return batch_id


def _text(series: pd.Series) -> pd.Series:
    """Object column of ``str`` with ``None`` for missing values (what Arrow and DuckDB expect).

    Columns that already hold only strings (the usual case, checked in C by ``infer_dtype``)
    skip the per-value ``str`` conversion, which costs seconds on a 1.5M-row batch.
    """
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) not in {"string", "empty"}:
        series = series.astype(object).where(series.isna(), series.astype(str))
    if not series.hasnans:
        return series
    return series.where(series.notna(), None)


def prepare_listings(listings: pd.DataFrame) -> pd.DataFrame:
    """Return the canonical listing columns, in order, coerced to :data:`schema.DTYPES`.

    A missing ``price`` column (Kaggle test-format files) becomes all-NaN; any other missing
    column, or a null / non-integer id, condition or shipping flag, is refused.
    """
    frame = listings.copy(deep=False)
    if schema.PRICE not in frame.columns:
        frame[schema.PRICE] = float("nan")
    missing = [c for c in schema.LISTING_COLUMNS if c not in frame.columns]
    if missing:
        raise WarehouseError(f"listings frame lacks canonical columns {missing}")
    out: dict[str, pd.Series] = {}
    for column in schema.LISTING_COLUMNS:
        values = frame[column]
        try:
            if column in INT_COLUMNS:
                out[column] = values.astype("int64")
            elif column == schema.PRICE:
                out[column] = pd.to_numeric(values).astype("float64")
            else:
                out[column] = _text(values)
        except (TypeError, ValueError) as exc:
            wanted = schema.DTYPES[column]
            raise WarehouseError(f"column {column!r} cannot be stored as {wanted}: {exc}") from exc
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def prepare_quarantine(rejects: pd.DataFrame, batch_id: str) -> pd.DataFrame:
    """Return :data:`schema.QUARANTINE_COLUMNS` with ``batch_id`` filled in and checked."""
    missing = [c for c in schema.QUARANTINE_COLUMNS if c not in rejects.columns and c != "batch_id"]
    if missing:
        raise WarehouseError(f"quarantine frame lacks columns {missing}")
    frame = rejects.copy(deep=False)
    if "batch_id" in frame.columns:
        others = set(frame["batch_id"].dropna().astype(str)) - {batch_id}
        if others:
            raise WarehouseError(f"quarantine frame for batch {batch_id!r} holds rows of {sorted(others)}")
    out = {
        "batch_id": pd.Series([batch_id] * len(frame), dtype=object),
        "stage": _text(frame["stage"]).reset_index(drop=True),
        "line": _nullable_int(frame["line"]).reset_index(drop=True),
        "listing_id": _nullable_int(frame["listing_id"]).reset_index(drop=True),
        "reason": _text(frame["reason"]).reset_index(drop=True),
        "raw": _text(frame["raw"]).reset_index(drop=True),
    }
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def prepare_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """:data:`PREDICTION_VALUES`, in order: integer ids, float prices (a range may be null), text flags."""
    missing = [c for c in PREDICTION_VALUES if c not in predictions.columns]
    if missing:
        raise WarehouseError(f"predictions frame lacks columns {missing}")
    frame = predictions.reset_index(drop=True)
    try:
        out = {
            "listing_id": frame["listing_id"].astype("int64"),
            "price": pd.to_numeric(frame["price"]).astype("float64"),
            "price_low": pd.to_numeric(frame["price_low"]).astype("float64"),
            "price_high": pd.to_numeric(frame["price_high"]).astype("float64"),
            "flags": _text(frame["flags"]),
        }
    except (TypeError, ValueError) as exc:
        raise WarehouseError(f"predictions cannot be stored: {exc}") from exc
    if out["price"].isna().any():
        raise WarehouseError("every stored prediction needs a price")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def check_key(**key: str) -> dict[str, str]:
    """Refuse empty parts of a replace key (batch id, model name, model version)."""
    for name, value in key.items():
        if not isinstance(value, str) or not value.strip():
            raise WarehouseError(f"{name} must be a non-empty string, got {value!r}")
    return key


def _nullable_int(series: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(series).astype("Int64")
    except (TypeError, ValueError) as exc:
        raise WarehouseError(f"column {series.name!r} must hold integers or nulls: {exc}") from exc


_TEXT_RESULTS = {"batch_id", "stage", "reason", "raw", "model_name", "model_version", "flags"}


def coerce_result(frame: pd.DataFrame, *, nullable_ints: Collection[str] = ()) -> pd.DataFrame:
    """Give result columns the canonical dtypes, whichever backend produced them.

    Integer columns become ``int64``, or nullable ``Int64`` when they hold nulls (an outer join)
    or are listed in ``nullable_ints`` (so an all-present quarantine column keeps one dtype);
    text becomes ``object`` with ``None``; timestamps become UTC-aware.
    """
    out = frame.reset_index(drop=True)
    for column in out.columns:
        values = out[column]
        if column in INT_COLUMNS or column in NULLABLE_INT_QUARANTINE or column in {"rows", "unscored"}:
            if column in nullable_ints or values.isna().any():
                out[column] = pd.to_numeric(values).astype("Int64")
            else:
                out[column] = pd.to_numeric(values).astype("int64")
        elif column in {schema.PRICE, "price_low", "price_high"}:
            out[column] = pd.to_numeric(values).astype("float64")
        elif column in schema.TEXT_COLUMNS or column in _TEXT_RESULTS:
            out[column] = _text(values)
        elif column in {"ingested_at", "quarantined_at", "scored_at"}:
            out[column] = pd.to_datetime(values, utc=True).astype(TIMESTAMP_DTYPE)
    return out


def empty_listings() -> pd.DataFrame:
    """A zero-row frame with the listing columns and dtypes (for an empty batch filter)."""
    columns = {c: pd.Series(dtype=schema.DTYPES[c]) for c in schema.LISTING_COLUMNS}
    columns["batch_id"] = pd.Series(dtype=object)
    return pd.DataFrame(columns)
