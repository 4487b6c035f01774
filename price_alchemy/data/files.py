"""Read and write listing files in the Kaggle Mercari format.

Files are ``.tsv``, ``.csv`` or ``.parquet``, each optionally compressed (``.gz``, ``.bz2``, ``.xz``,
``.zip`` with one member, ``.7z``); the format comes from the suffixes (``train.tsv.7z``). Reading
turns a Kaggle file (``train_id`` + ``price``, or ``test_id`` without price) into the canonical
frame of :mod:`price_alchemy.schema` and never fails on bad records: every record that cannot be
parsed into the column types is returned in ``rejects`` with its physical line and a reason, so
nothing is dropped silently. Content rules (ranges, duplicates, missing names) are validation's job.

For scoring, :func:`stream_listings` reads leniently and in chunks instead (memory stays flat
whatever the file's size): a missing or invalid field that is not essential is taken as unknown
and flagged, a record with the wrong number of fields is realigned or re-read without quoting, and
only records without an id are left out (:mod:`~price_alchemy.data.repair`,
:mod:`~price_alchemy.data.lenient`).

This module is the public entry point; the work is done in three stages, one module each:
:mod:`~price_alchemy.data.sources` (format, compression, archives: opening the bytes),
:mod:`~price_alchemy.data.readers` (streaming records out of delimited text or parquet, in chunks
of :data:`CHUNK_ROWS`) and :mod:`~price_alchemy.data.parsing` (field values to typed columns, and
the reasons a record is rejected).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from price_alchemy import schema
from price_alchemy.data.lenient import lenient_delimited, lenient_parquet
from price_alchemy.data.parsing import Rejects, empty_listings, rejects_frame
from price_alchemy.data.readers import (
    CHUNK_ROWS,
    RAW_MAX_CHARS,
    Progress,
    fetch_raw,
    read_delimited,
    read_parquet,
)
from price_alchemy.data.repair import ListingChunk
from price_alchemy.data.sources import SEPARATORS, detect, open_source, open_writer
from price_alchemy.errors import DataFormatError

__all__ = [
    "CHUNK_ROWS",
    "KAGGLE_COLUMNS",
    "RAW_MAX_CHARS",
    "ListingChunk",
    "ListingStream",
    "Progress",
    "ReadResult",
    "open_source",
    "read_listings",
    "stream_listings",
    "write_listings",
]

log = logging.getLogger(__name__)

KAGGLE_COLUMNS: tuple[str, ...] = (
    "name",
    "item_condition_id",
    "category_name",
    "brand_name",
    schema.PRICE,
    "shipping",
    "item_description",
)


@dataclass(frozen=True)
class ReadResult:
    """What :func:`read_listings` found: the parsed listings and the records it could not parse."""

    listings: pd.DataFrame
    rejects: pd.DataFrame
    id_column: str
    has_price: bool
    source: str

    @property
    def n_records(self) -> int:
        """Records seen in the file (kept plus rejected; blank lines are not records)."""
        return len(self.listings) + len(self.rejects)


def read_listings(path: str | Path, *, on_progress: Progress | None = None) -> ReadResult:
    """Read a Kaggle-format listings file into the canonical frame plus a frame of rejected records."""
    started = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    rejects = Rejects([])
    with open_source(path) as source:
        if source.fmt == "parquet":
            frames, id_column, has_price, raws = read_parquet(
                source.open_binary, str(path), rejects, on_progress
            )
        else:
            frames, id_column, has_price = read_delimited(
                source, SEPARATORS[source.fmt], str(path), rejects, on_progress
            )
            raws = fetch_raw(source.open_text, [(s, e) for s, e, _, _ in rejects.items])
    listings = pd.concat(frames, ignore_index=True) if frames else empty_listings()
    rejected = rejects_frame(rejects, raws)
    if on_progress is not None:
        on_progress(len(listings) + len(rejected))
    log.info(
        "read %d listings and %d rejects from %s in %.1fs",
        len(listings),
        len(rejected),
        path,
        time.perf_counter() - started,
    )
    return ReadResult(listings, rejected, id_column, has_price, str(path))


@dataclass(frozen=True)
class ListingStream:
    """A listings file being read leniently: its layout and its chunks (read once, in file order)."""

    source: str
    id_column: str
    has_price: bool
    chunks: Iterator[ListingChunk]


@contextmanager
def stream_listings(path: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[ListingStream]:
    """Open a listings file for lenient, chunked reading; the chunks must be consumed inside the block.

    Header problems (no id column, a required column missing) still raise :class:`DataFormatError`:
    without them no record can be read at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    with open_source(path) as source:
        if source.fmt == "parquet":
            id_column, has_price, chunks = lenient_parquet(source, str(path), chunk_rows)
        else:
            id_column, has_price, chunks = lenient_delimited(
                source, SEPARATORS[source.fmt], str(path), chunk_rows
            )
        try:
            yield ListingStream(str(path), id_column, has_price, chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def write_listings(df: pd.DataFrame, path: str | Path, *, id_column: str = schema.TRAIN_ID) -> Path:
    """Write a canonical frame as a Kaggle file (train or test layout) that :func:`read_listings` reads back.

    The format and compression come from the suffixes like for reading (``.7z`` cannot be written).
    The file is written beside the target and renamed into place, so readers never see half a file.
    """
    if id_column not in schema.ID_COLUMNS:
        raise DataFormatError(f"id_column must be one of {schema.ID_COLUMNS}, got {id_column!r}")
    columns = [c for c in KAGGLE_COLUMNS if not (c == schema.PRICE and id_column == schema.TEST_ID)]
    missing = [c for c in (schema.LISTING_ID, *columns) if c not in df.columns]
    if missing:
        raise DataFormatError(f"cannot write {path}: frame lacks column(s) {', '.join(missing)}")
    out = df.loc[:, [schema.LISTING_ID, *columns]].rename(columns={schema.LISTING_ID: id_column})
    path = Path(path)
    fmt, compression = detect(path.name)
    if fmt is None or compression == ".7z":
        raise DataFormatError(
            f"cannot write {path}: use .tsv, .csv or .parquet, optionally with .gz, .bz2, .xz or .zip"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    member = path.name.removesuffix(path.suffix) if compression else path.name
    with open_writer(part, compression, member) as handle:
        if fmt == "parquet":
            buffer = io.BytesIO()  # pyarrow needs tell(), which compressed zip members lack
            out.to_parquet(buffer, index=False)
            handle.write(buffer.getbuffer())
        else:
            with io.TextIOWrapper(handle, encoding="utf-8", newline="") as text:
                out.to_csv(text, sep=SEPARATORS[fmt], index=False, lineterminator="\n")
    part.replace(path)
    log.info("wrote %d listings to %s", len(out), path)
    return path
