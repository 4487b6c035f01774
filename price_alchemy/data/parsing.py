"""From raw field values to the canonical listing frame, and the bookkeeping of rejected records.

Pure code, no I/O: the readers in :mod:`price_alchemy.data.readers` hand over one chunk of raw
column values (strings from delimited text, Python objects from parquet) and get back the rows
that parse into the column types of :mod:`price_alchemy.schema`, plus a reason for every other row.
The per-field rules are :func:`_parse_int`, :func:`_parse_price` and :func:`clean_text`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import schema
from price_alchemy.errors import DataFormatError

log = logging.getLogger(__name__)

INT_COLUMNS = ("item_condition_id", "shipping")


@dataclass
class Rejects:
    """Rejected records collected while reading: start line, end line, id text, reason."""

    items: list[tuple[int, int, str | None, str]]
    shape_errors: int = 0

    def add(self, start: int, end: int, listing_id: Any, reason: str) -> None:
        text = None if listing_id is None else str(listing_id).strip() or None
        self.items.append((start, end, text, reason))


def check_columns(names: list[str], source: str) -> tuple[str, bool]:
    """Find the id column and refuse a header that lacks a required column."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataFormatError(f"{source}: duplicate column(s) {', '.join(dupes)} in header")
    ids = [c for c in schema.ID_COLUMNS if c in names]
    if len(ids) != 1:
        raise DataFormatError(
            f"{source}: expected exactly one id column (train_id or test_id), header has {names}"
        )
    id_column = ids[0]
    required = [id_column, *schema.FEATURE_COLUMNS]
    if id_column == schema.TRAIN_ID:
        required.append(schema.PRICE)
    missing = [c for c in required if c not in names]
    if missing:
        raise DataFormatError(
            f"{source}: missing required column(s) {', '.join(missing)}; header has {names}"
        )
    extra = [n for n in names if n not in required and n != schema.PRICE]
    if extra:
        log.warning("%s: ignoring extra column(s) %s", source, extra)
    return id_column, schema.PRICE in names


def to_canonical(
    raw: dict[str, Sequence[Any]], n: int, id_column: str, has_price: bool
) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Parse one chunk of raw column values; returns the kept rows and (position, reason) of the others."""
    problems: dict[int, list[str]] = {}
    ids = _parse_int(raw[id_column], id_column, problems)
    ints = {c: _parse_int(raw[c], c, problems) for c in INT_COLUMNS}
    price = _parse_price(raw[schema.PRICE], problems) if has_price else np.full(n, np.nan)
    keep = np.ones(n, dtype=bool)
    keep[list(problems)] = False
    frame = pd.DataFrame(
        {
            schema.LISTING_ID: ids[keep],
            "name": clean_text(raw["name"], keep),
            "item_condition_id": ints["item_condition_id"][keep],
            "category_name": clean_text(raw["category_name"], keep),
            "brand_name": clean_text(raw["brand_name"], keep),
            "shipping": ints["shipping"][keep],
            "item_description": clean_text(raw["item_description"], keep),
            schema.PRICE: price[keep],
        }
    ).astype(schema.DTYPES)
    return frame, sorted((pos, "; ".join(reasons)) for pos, reasons in problems.items())


def _parse_int(values: Sequence[Any], column: str, problems: dict[int, list[str]]) -> np.ndarray:
    """Integer column: accepts integer-valued numbers ("3", " 3", "3.0"); records why others fail."""
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy()
    if num.dtype.kind in "iu":
        return num.astype(np.int64)
    num = num.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(num) & (num == np.round(num)) & (np.abs(num) < 2.0**62)
    for pos in np.flatnonzero(~ok):
        value = values[int(pos)]
        reason = f"{column} missing" if is_missing(value) else f"{column} {_quote(value)} is not an integer"
        problems.setdefault(int(pos), []).append(reason)
    return np.where(ok, num, 0).astype(np.int64)


def _parse_price(values: Sequence[Any], problems: dict[int, list[str]]) -> np.ndarray:
    """Price column: an empty price is kept as NaN (validation decides), text that is not a number is not."""
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    for pos in np.flatnonzero(~np.isfinite(num)):
        value = values[int(pos)]
        if is_missing(value):
            num[pos] = np.nan
        else:
            problems.setdefault(int(pos), []).append(f"price {_quote(value)} is not a number")
    return num


def clean_text(values: Sequence[Any], keep: np.ndarray) -> list[str | None]:
    """Strip text; empty or missing becomes None."""
    kept: Iterable[Any] = values if keep.all() else compress(values, keep)
    try:
        return [v.strip() or None for v in kept]
    except AttributeError:  # parquet or odd input: None, NaN or non-str values
        kept = values if keep.all() else compress(values, keep)
        return [None if is_missing(v) else str(v).strip() or None for v in kept]


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _quote(value: Any) -> str:
    text = str(value).strip()
    return repr(text if len(text) <= 50 else text[:47] + "...")


def rejects_frame(rejects: Rejects, raws: dict[int, str]) -> pd.DataFrame:
    """The rejects as a quarantine frame, in line order; ``raws`` maps a start line to its raw text."""
    items = sorted(rejects.items, key=lambda item: item[0])
    frame = pd.DataFrame(
        {
            "batch_id": pd.Series([None] * len(items), dtype=object),
            "stage": pd.Series(["read"] * len(items), dtype=object),
            "line": pd.Series([s for s, _, _, _ in items], dtype=np.int64),
            "listing_id": pd.Series([i for _, _, i, _ in items], dtype=object),
            "reason": pd.Series([r for _, _, _, r in items], dtype=object),
            "raw": pd.Series([raws.get(s) for s, _, _, _ in items], dtype=object),
        }
    )
    return frame.loc[:, list(schema.QUARANTINE_COLUMNS)]


def empty_listings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=schema.DTYPES[c]) for c in schema.LISTING_COLUMNS})
