"""Lenient parsing for scoring: every record that carries an id becomes a listing the model can price.

Reading for ingestion is strict (:mod:`price_alchemy.data.parsing`): a record with one bad field is
rejected, because a bad row must not reach the warehouse. Scoring asks another question: what
price does each listing get? Here a field that is missing or invalid but not essential is set to
*unknown* and the listing is flagged with what was imputed and why:

- ``item_condition_id`` / ``shipping`` missing, junk or out of range -> :data:`UNKNOWN_CODE`, a
  value no training row has, so the featurizer gives it the "never seen" code (the same path a new
  brand takes); a real value such as shipping 0 would be a guess, not "unknown";
- ``category_name`` not shaped ``a/b/c`` or too long, ``brand_name`` too long -> missing (a prefix of
  a category or brand names another one);
- ``name`` and ``item_description`` too long -> cut to their limits (a prefix keeps the meaning);
- a missing name is kept missing and flagged (the text of the other fields still prices it);
- a train-format ``price`` is not an input: a junk price becomes NaN, unflagged.

A record with an id but no usable content (no name, category, brand or description) is flagged
:data:`FALLBACK`: the scorer gives it the fallback price instead of the model's. A record without a
parseable id cannot be attributed and is *skipped* (reported with its line). Records with the wrong
number of fields are realigned when one reading makes the numeric fields valid
(:func:`align_record`): extra fields merged into one text field (an unquoted tab), or a missing text
field inserted. Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import schema
from price_alchemy.data.parsing import _parse_int, _quote, clean_text, is_missing

UNKNOWN_CODE = -1
"""Condition / shipping value that stands for "unknown": never in training data (validation refuses it)."""
IMPUTED, FALLBACK, DUPLICATE, SKIPPED = "imputed", "fallback", "duplicate", "skipped"
FLAG_COLUMNS = ("position", schema.LISTING_ID, "line", "flag", "fields", "reason")
SKIP_COLUMNS = ("line", "reason", "raw")
CONTENT_COLUMNS = ("name", "category_name", "brand_name", "item_description")
_CATEGORY = re.compile(schema.CATEGORY_PATTERN)
#: Text columns a realignment may merge extra fields into or insert a missing field at, most likely first.
_MERGE_ORDER = ("item_description", "name", "brand_name", "category_name")
_INSERT_ORDER = ("brand_name", "category_name", "item_description", "name")


@dataclass(frozen=True)
class ListingChunk:
    """One chunk of a leniently read file: listings to price, their flags, and unattributable records.

    ``flags`` has :data:`FLAG_COLUMNS` (``position`` is the row in ``listings``); ``lines`` holds each
    listing's first physical line, or is None when the fast reader read the chunk (clean chunks only).
    """

    listings: pd.DataFrame
    lines: np.ndarray | None
    flags: pd.DataFrame
    skipped: pd.DataFrame

    @property
    def fallback(self) -> np.ndarray:
        """Positions of the listings that get the fallback price."""
        return self.flags.loc[self.flags["flag"] == FALLBACK, "position"].to_numpy(dtype=np.int64)


FLAG_DTYPES = {
    "position": "int64",
    schema.LISTING_ID: "int64",
    "line": "Int64",
    "flag": object,
    "fields": object,
    "reason": object,
}
SKIP_DTYPES = {"line": "Int64", "reason": object, "raw": object}


def lenient_canonical(
    raw: dict[str, Sequence[Any]],
    n: int,
    id_column: str,
    *,
    lines: Sequence[int] | None = None,
    notes: dict[int, tuple[list[str], str]] | None = None,
    raws: dict[int, str] | None = None,
    sep: str = "\t",
) -> ListingChunk:
    """Parse one chunk of raw columns leniently (see the module docstring).

    ``notes`` adds reader findings per record position (fields concerned, reason), e.g. a realigned
    record; ``raws`` gives the raw text of those records (a skipped record without one shows its
    fields joined by ``sep``).
    """
    notes = notes or {}
    raws = raws or {}
    id_problems: dict[int, list[str]] = {}
    ids = _parse_int(raw[id_column], id_column, id_problems)
    keep = np.ones(n, dtype=bool)
    keep[list(id_problems)] = False
    line_of = np.asarray(lines if lines is not None else np.full(n, -1), dtype=np.int64)
    unattributed = sorted(id_problems)
    skipped = pd.DataFrame(
        {
            "line": [int(line_of[p]) if lines is not None else None for p in unattributed],
            "reason": [
                "; ".join([*id_problems[p], *([notes[p][1]] if p in notes else [])]) for p in unattributed
            ],
            "raw": [
                raws.get(p) or sep.join("" if is_missing(raw[c][p]) else str(raw[c][p]) for c in raw)
                for p in unattributed
            ],
        },
        columns=list(SKIP_COLUMNS),
    ).astype(SKIP_DTYPES)
    issues: dict[int, tuple[list[str], list[str]]] = {}  # kept position -> (fields, reasons)

    def note(pos: np.ndarray, field: str, reasons: Sequence[str]) -> None:
        for p, reason in zip(pos.tolist(), reasons, strict=True):
            fields, texts = issues.setdefault(p, ([], []))
            fields.append(field)
            texts.append(reason)

    kept_raw = (
        {c: [v for v, k in zip(raw[c], keep, strict=True) if k] for c in raw} if not keep.all() else raw
    )
    m = int(keep.sum())
    for position, (fields, reason) in notes.items():
        if keep[position]:
            note(np.array([int(keep[:position].sum())]), ";".join(fields), [reason])
    codes = {
        "item_condition_id": _lenient_code(
            kept_raw["item_condition_id"], "item_condition_id", schema.CONDITIONS, note
        ),
        "shipping": _lenient_code(kept_raw["shipping"], "shipping", schema.SHIPPING_VALUES, note),
    }
    price = np.full(m, np.nan)
    if schema.PRICE in kept_raw:
        price = pd.to_numeric(pd.Series(kept_raw[schema.PRICE], dtype=object), errors="coerce").to_numpy(
            dtype=np.float64
        )
        price[~np.isfinite(price)] = np.nan
    everything = np.ones(m, dtype=bool)
    texts = {c: clean_text(kept_raw[c], everything) for c in schema.TEXT_COLUMNS}
    _cut(texts["name"], schema.NAME_MAX_LEN, "name", note)
    _cut(texts["item_description"], schema.DESCRIPTION_MAX_LEN, "item_description", note)
    _drop_invalid(texts["brand_name"], "brand_name", note, max_len=schema.BRAND_MAX_LEN)
    _drop_invalid(texts["category_name"], "category_name", note, max_len=schema.CATEGORY_MAX_LEN, shaped=True)
    frame = pd.DataFrame(
        {
            schema.LISTING_ID: ids[keep],
            "name": texts["name"],
            "item_condition_id": codes["item_condition_id"],
            "category_name": texts["category_name"],
            "brand_name": texts["brand_name"],
            "shipping": codes["shipping"],
            "item_description": texts["item_description"],
            schema.PRICE: price,
        }
    ).astype(schema.DTYPES)
    empty = _without_content(frame)
    missing_name = np.flatnonzero(frame["name"].isna().to_numpy() & ~empty)
    note(missing_name, "name", ["name missing"] * len(missing_name))
    kept_lines = line_of[keep]
    rows = sorted(set(issues) | set(np.flatnonzero(empty).tolist()))
    flags = pd.DataFrame(
        {
            "position": rows,
            schema.LISTING_ID: [int(frame[schema.LISTING_ID].iat[p]) for p in rows],
            "line": [int(kept_lines[p]) if lines is not None else None for p in rows],
            "flag": [FALLBACK if empty[p] else IMPUTED for p in rows],
            "fields": [";".join(dict.fromkeys(issues.get(p, ([], []))[0])) for p in rows],
            "reason": [_reason(issues.get(p), bool(empty[p])) for p in rows],
        },
        columns=list(FLAG_COLUMNS),
    ).astype(FLAG_DTYPES)
    return ListingChunk(frame, kept_lines if lines is not None else None, flags, skipped)


def _reason(issue: tuple[list[str], list[str]] | None, empty: bool) -> str:
    reasons = list(issue[1]) if issue else []
    if empty:
        reasons.insert(0, "no usable content (name, category, brand and description all missing)")
    return "; ".join(reasons)


def _without_content(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose text fields are all missing ("No description yet" is no description)."""
    empty = np.ones(len(frame), dtype=bool)
    for column in CONTENT_COLUMNS:
        values = frame[column]
        present = values.notna().to_numpy()
        if column == "item_description":
            present &= (values != schema.NO_DESCRIPTION).to_numpy()
        empty &= ~present
    return empty


def _lenient_code(values: Sequence[Any], column: str, allowed: tuple[int, ...], note: Any) -> np.ndarray:
    """An integer code column; anything missing, non-integer or outside ``allowed`` becomes unknown."""
    problems: dict[int, list[str]] = {}
    codes = _parse_int(values, column, problems)
    outside = ~np.isin(codes, allowed)
    outside[list(problems)] = False
    for pos in np.flatnonzero(outside).tolist():
        problems[pos] = [f"{column} {int(codes[pos])} not in {_domain(allowed)}"]
    bad = np.array(sorted(problems), dtype=np.int64)
    codes[bad] = UNKNOWN_CODE
    note(bad, column, [problems[p][0] + ", taken as unknown" for p in bad.tolist()])
    return codes


def _domain(allowed: tuple[int, ...]) -> str:
    return f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 2 else "{" + ", ".join(map(str, allowed)) + "}"


def _cut(values: list[str | None], limit: int, column: str, note: Any) -> None:
    long = [i for i, v in enumerate(values) if v is not None and len(v) > limit]
    for i in long:
        values[i] = str(values[i])[:limit].rstrip() or None
    note(np.array(long, dtype=np.int64), column, [f"{column} longer than {limit}, cut"] * len(long))


def _drop_invalid(
    values: list[str | None], column: str, note: Any, *, max_len: int, shaped: bool = False
) -> None:
    """Set over-long (or, for categories, badly shaped) values to missing; distinct values checked once."""
    verdict: dict[str, str | None] = {}
    bad: list[int] = []
    reasons: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            continue
        if value not in verdict:
            why = None
            if len(value) > max_len:
                why = f"{column} longer than {max_len}, taken as missing"
            elif shaped and not _CATEGORY.match(value):
                why = f"{column} {_quote(value)} not shaped a/b/c, taken as missing"
            verdict[value] = why
        why = verdict[value]
        if why is not None:
            values[i] = None
            bad.append(i)
            reasons.append(why)
    note(np.array(bad, dtype=np.int64), column, reasons)


def align_record(
    fields: list[str], names: list[str], has_price: bool, sep: str = "\t"
) -> tuple[list[str], str] | None:
    """A record with the wrong number of fields as one with ``len(names)``, if one reading fits.

    Extra fields are merged into one text column (joined by ``sep``: most often an unquoted separator
    in a description or name); one or two missing fields are inserted as empty text columns. A reading
    fits when condition and shipping parse as valid codes, the price (if any) as a number or empty,
    and the category is empty or shaped ``a/b/c``. Returns the fields and the column concerned.
    """
    width = len(names)
    diff = len(fields) - width
    if diff == 0 or not fields or len(fields) < 2:
        return None
    if diff > 0:
        for column in _MERGE_ORDER:
            at = names.index(column)
            if at + diff >= len(fields):
                continue
            candidate = [*fields[:at], sep.join(fields[at : at + diff + 1]), *fields[at + diff + 1 :]]
            if _fits(candidate, names, has_price):
                return candidate, column
        return None
    if -diff > 2:
        return None
    for columns in combinations(_INSERT_ORDER, -diff):
        candidate = list(fields)
        for at in sorted(names.index(c) for c in columns):
            candidate.insert(at, "")
        if _fits(candidate, names, has_price):
            return candidate, ";".join(columns)
    return None


def _fits(fields: list[str], names: list[str], has_price: bool) -> bool:
    value = dict(zip(names, fields, strict=True))

    def code(text: str, allowed: tuple[int, ...]) -> bool:
        try:
            number = float(text)
        except ValueError:
            return False
        return number.is_integer() and int(number) in allowed

    if not (
        code(value["item_condition_id"], schema.CONDITIONS)
        and code(value["shipping"], schema.SHIPPING_VALUES)
    ):
        return False
    if has_price and not is_missing(value[schema.PRICE]):
        try:
            float(value[schema.PRICE])
        except ValueError:
            return False
    category = value["category_name"].strip()
    return not category or bool(_CATEGORY.match(category))
