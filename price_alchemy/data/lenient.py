"""Stream a listings file for scoring, in chunks, recovering every record that can be tied to an id.

The strict readers (:mod:`price_alchemy.data.readers`) reject a record with the wrong number of
fields. Here such a record is first *realigned* (:func:`~price_alchemy.data.repair.align_record`);
if that fails and the record spans several physical lines or holds a quote character (an
unbalanced quote swallows the lines after it), its physical lines are re-read one by one without
quoting, so the listings swallowed by the quote come back; what still cannot be separated keeps
its id, if the first field is one, and gets the fallback price. Field values are parsed by
:func:`~price_alchemy.data.repair.lenient_canonical`.

Memory stays flat: records are converted ``chunk_rows`` at a time and nothing is kept across
chunks. A clean delimited file goes through pyarrow's fast reader; at the first block that needs a
repair (whose line numbers pyarrow cannot give) the file is re-read record by record from there.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from price_alchemy import schema
from price_alchemy.data import readers
from price_alchemy.data.parsing import check_columns
from price_alchemy.data.readers import RAW_MAX_CHARS, FastState, _is_record, fast_batches
from price_alchemy.data.repair import ListingChunk, align_record, lenient_canonical
from price_alchemy.data.sources import Source
from price_alchemy.errors import DataFormatError

RECORD = "(record)"
"""The ``fields`` of a flag about the record as a whole (realigned, re-read without quoting)."""


class _LineTap:
    """Hands lines to :func:`csv.reader` and keeps those of the record being read."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        self.lines: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._text)
        self.lines.append(line)
        return line

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def lenient_delimited(
    source: Source, sep: str, path: str, chunk_rows: int
) -> tuple[str, bool, Iterator[ListingChunk]]:
    """The id column, whether there is a price, and the chunks of a delimited file."""
    with source.open_text() as text:
        reader = csv.reader(text, delimiter=sep)
        header = next((rec for rec in reader if _is_record(rec)), None)
        header_lines = reader.line_num
    if header is None:
        raise DataFormatError(f"{path}: file is empty (no header line)")
    names = [h.strip() for h in header]
    id_column, has_price = check_columns(names, path)

    def chunks() -> Iterator[ListingChunk]:
        done = 0
        if header_lines == 1:
            state = FastState()
            # one block at a time (the cores belong to the scorer's workers), small blocks (read-ahead)
            blocks = fast_batches(
                source,
                sep,
                names,
                id_column,
                has_price,
                state,
                use_threads=False,
                block_bytes=readers.STREAM_BLOCK_BYTES,
            )
            for frame in blocks:
                raw = {c: frame[c].to_numpy(dtype=object) for c in frame.columns}
                chunk = lenient_canonical(raw, len(frame), schema.LISTING_ID)
                if not chunk.flags.empty:
                    break  # a repair needs line numbers: re-read record by record from this block
                done += len(frame)
                yield chunk
            else:
                if state.complete:
                    return
        yield from _careful(source, sep, names, id_column, has_price, done, chunk_rows)

    return id_column, has_price, chunks()


class _Batch:
    """Records of one chunk, all with the header's width, and what the reader noticed about them."""

    def __init__(self, names: list[str], id_column: str, sep: str) -> None:
        self.names, self.id_column, self.sep = names, id_column, sep
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.notes: dict[int, tuple[list[str], str]] = {}
        self.raws: dict[int, str] = {}

    def add(
        self, fields: list[str], line: int, note: tuple[list[str], str] | None = None, raw: str = ""
    ) -> None:
        if note is not None:
            self.notes[len(self.rows)] = note
            self.raws[len(self.rows)] = raw[:RAW_MAX_CHARS].rstrip("\r\n")
        self.rows.append(fields)
        self.lines.append(line)

    def flush(self) -> ListingChunk:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [() for _ in self.names]
        raw: dict[str, Any] = {name: columns[i] for i, name in enumerate(self.names)}
        chunk = lenient_canonical(
            raw,
            len(self.rows),
            self.id_column,
            lines=self.lines,
            notes=self.notes,
            raws=self.raws,
            sep=self.sep,
        )
        self.rows, self.lines, self.notes, self.raws = [], [], {}, {}
        return chunk


def _careful(
    source: Source, sep: str, names: list[str], id_column: str, has_price: bool, skip: int, chunk_rows: int
) -> Iterator[ListingChunk]:
    """Record by record with :mod:`csv`, skipping the first ``skip`` records (already read fast)."""
    width = len(names)
    batch = _Batch(names, id_column, sep)
    seen = 0

    def salvage(fields: list[str] | None, start: int, physical: list[str], why: str) -> None:
        text = "".join(physical)
        if fields is not None and realign(fields, start, text, why):
            return
        if len(physical) > 1 or '"' in text:
            for offset, line in enumerate(physical):
                parts = line.rstrip("\r\n").split(sep)
                if not _is_record(parts):
                    continue
                quoted = '"' in line
                resplit = "unbalanced quote: record re-read line by line without quoting"
                if len(parts) == width:  # a line swallowed by the quote before it comes back whole
                    batch.add(parts, start + offset, ([RECORD], resplit) if quoted else None, line)
                    continue
                shape = f"expected {width} fields, got {len(parts)}"
                unseparable(parts, start + offset, line, f"{resplit}; {shape}" if quoted else shape)
            return
        unseparable(fields or [], start, text, why)

    def realign(fields: list[str], start: int, text: str, why: str) -> bool:
        aligned = align_record(fields, names, has_price, sep)
        if aligned is None:
            return False
        verb = "extra fields joined into" if len(fields) > width else "taken as missing:"
        batch.add(aligned[0], start, ([RECORD], f"{why}; {verb} {aligned[1]}"), text)
        return True

    def unseparable(fields: list[str], start: int, text: str, why: str) -> None:
        if fields and realign(fields, start, text, why):
            return
        id_pos = names.index(id_column)
        empty = [""] * width
        empty[id_pos] = fields[id_pos] if len(fields) > id_pos else ""
        batch.add(empty, start, ([RECORD], f"{why}; fields could not be separated"), text)

    with source.open_text() as text:
        tap = _LineTap(text)
        reader = csv.reader(tap, delimiter=sep)
        next(rec for rec in reader if _is_record(rec))  # the header, already checked
        tap.take()
        end = reader.line_num
        while True:
            try:
                for rec in reader:
                    start, end = end + 1, reader.line_num
                    physical = tap.take()
                    if not _is_record(rec):
                        continue
                    if seen < skip:
                        seen += 1
                        continue
                    if len(rec) == width:
                        batch.add(rec, start)
                    else:
                        why = f"expected {width} fields, got {len(rec)}"
                        salvage(rec, start, physical, why)
                    if len(batch.rows) >= chunk_rows:
                        yield batch.flush()
                break
            except csv.Error as exc:  # e.g. an unbalanced quote swallowing 128k characters
                start, end = end + 1, reader.line_num
                physical = tap.take()
                if seen < skip:
                    seen += 1
                    continue
                salvage(None, start, physical, f"unparseable record ({exc})")
    if batch.rows:
        yield batch.flush()


def lenient_parquet(source: Source, path: str, chunk_rows: int) -> tuple[str, bool, Iterator[ListingChunk]]:
    """The id column, whether there is a price, and the chunks of a parquet file (line = row index + 1)."""
    import pyarrow.parquet as pq

    def open_file() -> Any:
        if source.compression is None:
            return pq.ParquetFile(source.path)
        with source.open_binary() as handle:  # a compressed stream cannot seek: in memory
            return pq.ParquetFile(io.BytesIO(handle.read()))

    data = open_file()
    names = list(data.schema_arrow.names)
    id_column, has_price = check_columns(names, path)

    def chunks() -> Iterator[ListingChunk]:
        offset = 0
        for batch in data.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            raw = {name: frame[name].to_numpy(dtype=object) for name in frame.columns}
            lines = list(range(offset + 1, offset + len(frame) + 1))
            yield lenient_canonical(raw, len(frame), id_column, lines=lines)
            offset += len(frame)

    return id_column, has_price, chunks()
