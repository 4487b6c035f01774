"""Stream records out of an opened listings file: delimited text (fast and careful paths) and parquet.

Delimited text is parsed with the :mod:`csv` module's quoting rules, the same as
``pandas.read_csv`` (double quote, doubled quotes inside). A file is first tried with pyarrow's
streaming reader; pyarrow gives no line numbers, so at the first problem the file is re-read
record by record with :mod:`csv`, which knows each record's physical lines. Either way records are
converted in chunks of :data:`CHUNK_ROWS` by the vectorised code of :mod:`price_alchemy.data.parsing`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import schema
from price_alchemy.data.parsing import (
    INT_COLUMNS,
    Rejects,
    check_columns,
    clean_text,
    is_missing,
    to_canonical,
)
from price_alchemy.data.sources import Source
from price_alchemy.errors import DataFormatError

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
"""Records converted per chunk; also how often ``on_progress`` is called."""
RAW_MAX_CHARS = 1000
FAST_BLOCK_BYTES = 16 << 20
"""Bytes of text pyarrow parses per block (one frame per block on the fast path)."""
STREAM_BLOCK_BYTES = 2 << 20
"""Block size when streaming: pyarrow reads up to 32 blocks ahead whatever else is set, so this
bounds the bytes held in read-ahead (64 MB); ~10,000 listings per block."""
_LOW_CARDINALITY = ("category_name", "brand_name")  # a few thousand distinct values in 1.48M rows

Progress = Callable[[int], None]


def read_delimited(
    source: Source, sep: str, path: str, rejects: Rejects, on_progress: Progress | None
) -> tuple[list[pd.DataFrame], str, bool]:
    """Fast path with pyarrow; if anything in the file is off, re-read it record by record."""
    with source.open_text() as text:
        reader = csv.reader(text, delimiter=sep)
        header = next((rec for rec in reader if _is_record(rec)), None)
        header_lines = reader.line_num
    if header is None:
        raise DataFormatError(f"{path}: file is empty (no header line)")
    names = [h.strip() for h in header]
    id_column, has_price = check_columns(names, path)
    frames = None
    if header_lines == 1:
        frames = _read_fast(source, sep, names, id_column, has_price, on_progress)
    if frames is None:
        frames = _read_careful(source, sep, names, id_column, has_price, rejects, on_progress)
    return frames, id_column, has_price


def _read_fast(
    source: Source,
    sep: str,
    names: list[str],
    id_column: str,
    has_price: bool,
    on_progress: Progress | None,
) -> list[pd.DataFrame] | None:
    """Parse with pyarrow's streaming reader (same quoting rules as the csv module).

    pyarrow gives no line numbers, so this path only succeeds for files without a single bad record;
    it returns None at the first problem and the caller falls back to :func:`_read_careful`.
    """
    state = FastState()
    frames: list[pd.DataFrame] = []
    done = reported = 0
    for frame in fast_batches(source, sep, names, id_column, has_price, state):
        frames.append(frame)
        done += len(frame)
        if on_progress is not None and done - reported >= CHUNK_ROWS:
            on_progress(reported := done)
    return frames if state.complete else None


@dataclass
class FastState:
    """How :func:`fast_batches` ended: ``complete`` unless it stopped at a record it cannot parse."""

    complete: bool = False


def fast_batches(
    source: Source,
    sep: str,
    names: list[str],
    id_column: str,
    has_price: bool,
    state: FastState,
    *,
    use_threads: bool = True,
    block_bytes: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Canonical frames, one per pyarrow block, while every record parses; stops at the first that does not.

    Every frame yielded is complete and correct: a block with a bad record is not yielded, and
    ``state.complete`` stays False so the caller can re-read the rest record by record, skipping the
    rows already yielded (pyarrow and :mod:`csv` count records alike: blank lines are not records).
    ``use_threads=False`` parses one block at a time (no core is taken from whoever consumes the
    frames); pyarrow still reads up to 32 raw blocks ahead, so ``block_bytes`` bounds that memory.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    keys = [f"c{i}" for i in range(len(names))]
    col = dict(zip(names, keys, strict=True))
    try:
        with source.open_binary() as handle:
            batches = pcsv.open_csv(
                handle,
                read_options=pcsv.ReadOptions(
                    column_names=keys,
                    skip_rows=1,
                    block_size=block_bytes or FAST_BLOCK_BYTES,
                    use_threads=use_threads,
                ),
                parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(keys, pa.string()), strings_can_be_null=False
                ),
            )
            for batch in batches:
                data: dict[str, Any] = {}
                for name in (id_column, *INT_COLUMNS):
                    ints = pc.cast(pc.utf8_trim_whitespace(batch.column(col[name])), pa.int64())
                    if ints.null_count:
                        return
                    data[name] = ints.to_numpy()
                if has_price:
                    text = pc.utf8_trim_whitespace(batch.column(col[schema.PRICE]))
                    price = pc.cast(pc.if_else(pc.equal(text, ""), None, text), pa.float64())
                    if pc.sum(pc.invert(pc.is_finite(price))).as_py():
                        return  # "nan"/"inf": let the careful path reject them with a line
                    data[schema.PRICE] = price.to_numpy(zero_copy_only=False)
                else:
                    data[schema.PRICE] = np.full(batch.num_rows, np.nan)
                keep = np.ones(batch.num_rows, dtype=bool)
                for name in schema.TEXT_COLUMNS:
                    data[name] = _arrow_text(batch.column(col[name]), name in _LOW_CARDINALITY, keep)
                data[schema.LISTING_ID] = data.pop(id_column)
                yield pd.DataFrame(data, columns=list(schema.LISTING_COLUMNS)).astype(schema.DTYPES)
    except (pa.ArrowException, UnicodeError) as exc:
        log.info("%s: fast reader stopped (%s); re-reading record by record", source.path, exc)
        return
    state.complete = True


def _arrow_text(values: Any, low_cardinality: bool, keep: np.ndarray) -> Any:
    """Clean an arrow string column; low-cardinality columns share one str object per distinct value."""
    if not low_cardinality:
        return clean_text(values.to_numpy(zero_copy_only=False), keep)
    encoded = values.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    cleaned = np.empty(len(distinct), dtype=object)
    cleaned[:] = clean_text(distinct, np.ones(len(distinct), dtype=bool))
    return cleaned[encoded.indices.to_numpy()]


def _read_careful(
    source: Source,
    sep: str,
    names: list[str],
    id_column: str,
    has_price: bool,
    rejects: Rejects,
    on_progress: Progress | None,
) -> list[pd.DataFrame]:
    """Stream records with the csv module, keeping each record's first and last physical line."""
    frames: list[pd.DataFrame] = []
    width, id_pos = len(names), names.index(id_column)
    rows: list[list[str]] = []
    starts: list[int] = []
    ends: list[int] = []
    done = 0  # records of converted chunks; field-count rejects are counted in ``rejects``
    with source.open_text() as text:
        reader = csv.reader(text, delimiter=sep)
        next(rec for rec in reader if _is_record(rec))  # the header, already checked
        end = reader.line_num
        while True:
            try:
                for rec in reader:
                    start, end = end + 1, reader.line_num
                    if len(rec) == width:
                        rows.append(rec)
                        starts.append(start)
                        ends.append(end)
                        if len(rows) >= CHUNK_ROWS:
                            frames.append(_convert(rows, starts, ends, names, id_column, has_price, rejects))
                            done += len(rows)
                            rows, starts, ends = [], [], []
                            if on_progress is not None:
                                on_progress(done + rejects.shape_errors)
                    elif _is_record(rec):
                        reason = f"expected {width} fields, got {len(rec)}"
                        if end > start:
                            reason += f" (record spans lines {start}-{end})"
                        rejects.add(start, end, rec[id_pos] if len(rec) > id_pos else None, reason)
                        rejects.shape_errors += 1
                break
            except csv.Error as exc:  # e.g. an unbalanced quote swallowing 128k characters
                start, end = end + 1, reader.line_num
                rejects.add(start, end, None, f"unparseable record ({exc}; unbalanced quote?)")
                rejects.shape_errors += 1
    if rows:
        frames.append(_convert(rows, starts, ends, names, id_column, has_price, rejects))
    return frames


def _is_record(rec: list[str]) -> bool:
    """Blank (or whitespace-only) lines are not records."""
    return len(rec) > 1 or (len(rec) == 1 and bool(rec[0].strip()))


def _convert(
    rows: list[list[str]],
    starts: list[int],
    ends: list[int],
    names: list[str],
    id_column: str,
    has_price: bool,
    rejects: Rejects,
) -> pd.DataFrame:
    """Convert one chunk of records that have the right number of fields."""
    columns = list(zip(*rows, strict=True))
    raw: dict[str, Sequence[Any]] = {name: columns[i] for i, name in enumerate(names)}
    frame, bad = to_canonical(raw, len(rows), id_column, has_price)
    for pos, reason in bad:
        rejects.add(starts[pos], ends[pos], raw[id_column][pos], reason)
    return frame


def fetch_raw(open_text: Callable[[], Any], spans: list[tuple[int, int]]) -> dict[int, str]:
    """Second pass, only when there are rejects: the raw text of each rejected record by start line."""
    if not spans:
        return {}
    out: dict[int, str] = {}
    todo: Iterator[tuple[int, int]] = iter(sorted(spans))
    start, end = next(todo)
    parts: list[str] = []
    with open_text() as text:
        for lineno, line in enumerate(text, 1):
            if lineno < start:
                continue
            if sum(map(len, parts)) < RAW_MAX_CHARS:
                parts.append(line)
            if lineno >= end:
                out[start] = "".join(parts)[:RAW_MAX_CHARS].rstrip("\r\n")
                parts = []
                nxt = next(todo, None)
                if nxt is None:
                    break
                start, end = nxt
    return out


def read_parquet(
    open_binary: Callable[[], Any], source: str, rejects: Rejects, on_progress: Progress | None
) -> tuple[list[pd.DataFrame], str, bool, dict[int, str]]:
    """Read a parquet file in record batches; a reject's line is its row index + 1."""
    import pyarrow.parquet as pq

    frames: list[pd.DataFrame] = []
    raws: dict[int, str] = {}
    with open_binary() as handle:
        data = pq.ParquetFile(io.BytesIO(handle.read()))
        names = list(data.schema_arrow.names)
        id_column, has_price = check_columns(names, source)
        offset = 0
        for batch in data.iter_batches(batch_size=CHUNK_ROWS):
            chunk = batch.to_pandas()
            raw = {name: chunk[name].to_numpy(dtype=object) for name in chunk.columns}
            frame, bad = to_canonical(raw, len(chunk), id_column, has_price)
            for pos, reason in bad:
                line = offset + pos + 1
                rejects.add(line, line, raw[id_column][pos], reason)
                raws[line] = "\t".join("" if is_missing(raw[c][pos]) else str(raw[c][pos]) for c in names)
            frames.append(frame)
            offset += len(chunk)
            if on_progress is not None:
                on_progress(offset)
    return frames, id_column, has_price, raws
