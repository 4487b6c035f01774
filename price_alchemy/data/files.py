"""Read and write listing files in the Kaggle Mercari format.

Files are ``.tsv``, ``.csv`` or ``.parquet``, each optionally compressed (``.gz``, ``.bz2``, ``.xz``,
``.zip`` with one member, ``.7z``); the format comes from the suffixes (``train.tsv.7z``). Reading
turns a Kaggle file (``train_id`` + ``price``, or ``test_id`` without price) into the canonical
frame of :mod:`price_alchemy.schema` and never fails on bad records: every record that cannot be
parsed into the column types is returned in ``rejects`` with its physical line and a reason, so
nothing is dropped silently. Content rules (ranges, duplicates, missing names) are validation's job.

Delimited text is parsed with the :mod:`csv` module using the same quoting rules as
``pandas.read_csv`` (double quote, doubled quotes inside), streamed in chunks of
:data:`CHUNK_ROWS` records that are converted with vectorised pandas code.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from price_alchemy import schema
from price_alchemy.errors import DataFormatError

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
"""Records converted per chunk; also how often ``on_progress`` is called."""

KAGGLE_COLUMNS: tuple[str, ...] = (
    "name",
    "item_condition_id",
    "category_name",
    "brand_name",
    schema.PRICE,
    "shipping",
    "item_description",
)
RAW_MAX_CHARS = 1000
_FORMATS = {".tsv": "tsv", ".csv": "csv", ".parquet": "parquet"}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".7z")
_INT_COLUMNS = ("item_condition_id", "shipping")
_LOW_CARDINALITY = ("category_name", "brand_name")  # a few thousand distinct values in 1.48M rows
_SEPARATORS = {"tsv": "\t", "csv": ","}

Progress = Callable[[int], None]


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


@dataclass
class _Rejects:
    """Rejected records collected while reading: start line, end line, id text, reason."""

    items: list[tuple[int, int, str | None, str]]
    shape_errors: int = 0

    def add(self, start: int, end: int, listing_id: Any, reason: str) -> None:
        text = None if listing_id is None else str(listing_id).strip() or None
        self.items.append((start, end, text, reason))


def read_listings(path: str | Path, *, on_progress: Progress | None = None) -> ReadResult:
    """Read a Kaggle-format listings file into the canonical frame plus a frame of rejected records."""
    started = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    rejects = _Rejects([])
    with open_source(path) as source:
        if source.fmt == "parquet":
            frames, id_column, has_price, raws = _read_parquet(
                source.open_binary, str(path), rejects, on_progress
            )
        else:
            frames, id_column, has_price = _read_delimited(
                source, _SEPARATORS[source.fmt], str(path), rejects, on_progress
            )
            raws = _fetch_raw(source.open_text, [(s, e) for s, e, _, _ in rejects.items])
    listings = pd.concat(frames, ignore_index=True) if frames else _empty_listings()
    rejected = _rejects_frame(rejects, raws)
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
    fmt, compression = _detect(path.name)
    if fmt is None or compression == ".7z":
        raise DataFormatError(
            f"cannot write {path}: use .tsv, .csv or .parquet, optionally with .gz, .bz2, .xz or .zip"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    member = path.name.removesuffix(path.suffix) if compression else path.name
    with _open_writer(part, compression, member) as handle:
        if fmt == "parquet":
            buffer = io.BytesIO()  # pyarrow needs tell(), which compressed zip members lack
            out.to_parquet(buffer, index=False)
            handle.write(buffer.getbuffer())
        else:
            with io.TextIOWrapper(handle, encoding="utf-8", newline="") as text:
                out.to_csv(text, sep=_SEPARATORS[fmt], index=False, lineterminator="\n")
    part.replace(path)
    log.info("wrote %d listings to %s", len(out), path)
    return path


def _read_delimited(
    source: _Source, sep: str, path: str, rejects: _Rejects, on_progress: Progress | None
) -> tuple[list[pd.DataFrame], str, bool]:
    """Fast path with pyarrow; if anything in the file is off, re-read it record by record."""
    with source.open_text() as text:
        reader = csv.reader(text, delimiter=sep)
        header = next((rec for rec in reader if _is_record(rec)), None)
        header_lines = reader.line_num
    if header is None:
        raise DataFormatError(f"{path}: file is empty (no header line)")
    names = [h.strip() for h in header]
    id_column, has_price = _check_columns(names, path)
    frames = None
    if header_lines == 1:
        frames = _read_fast(source, sep, names, id_column, has_price, on_progress)
    if frames is None:
        frames = _read_careful(source, sep, names, id_column, has_price, rejects, on_progress)
    return frames, id_column, has_price


def _read_fast(
    source: _Source,
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
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    keys = [f"c{i}" for i in range(len(names))]
    col = dict(zip(names, keys, strict=True))
    frames: list[pd.DataFrame] = []
    done = reported = 0
    try:
        with source.open_binary() as handle:
            batches = pcsv.open_csv(
                handle,
                read_options=pcsv.ReadOptions(column_names=keys, skip_rows=1, block_size=16 << 20),
                parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(keys, pa.string()), strings_can_be_null=False
                ),
            )
            for batch in batches:
                data: dict[str, Any] = {}
                for name in (id_column, *_INT_COLUMNS):
                    ints = pc.cast(pc.utf8_trim_whitespace(batch.column(col[name])), pa.int64())
                    if ints.null_count:
                        return None
                    data[name] = ints.to_numpy()
                if has_price:
                    text = pc.utf8_trim_whitespace(batch.column(col[schema.PRICE]))
                    price = pc.cast(pc.if_else(pc.equal(text, ""), None, text), pa.float64())
                    if pc.sum(pc.invert(pc.is_finite(price))).as_py():
                        return None  # "nan"/"inf": let the careful path reject them with a line
                    data[schema.PRICE] = price.to_numpy(zero_copy_only=False)
                else:
                    data[schema.PRICE] = np.full(batch.num_rows, np.nan)
                keep = np.ones(batch.num_rows, dtype=bool)
                for name in schema.TEXT_COLUMNS:
                    data[name] = _arrow_text(batch.column(col[name]), name in _LOW_CARDINALITY, keep)
                data[schema.LISTING_ID] = data.pop(id_column)
                frames.append(pd.DataFrame(data, columns=list(schema.LISTING_COLUMNS)).astype(schema.DTYPES))
                done += batch.num_rows
                if on_progress is not None and done - reported >= CHUNK_ROWS:
                    on_progress(reported := done)
    except (pa.ArrowException, UnicodeError) as exc:
        log.info("%s: fast reader stopped (%s); re-reading record by record", source.path, exc)
        return None
    return frames


def _arrow_text(values: Any, low_cardinality: bool, keep: np.ndarray) -> Any:
    """Clean an arrow string column; low-cardinality columns share one str object per distinct value."""
    if not low_cardinality:
        return _clean_text(values.to_numpy(zero_copy_only=False), keep)
    encoded = values.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    cleaned = np.empty(len(distinct), dtype=object)
    cleaned[:] = _clean_text(distinct, np.ones(len(distinct), dtype=bool))
    return cleaned[encoded.indices.to_numpy()]


def _read_careful(
    source: _Source,
    sep: str,
    names: list[str],
    id_column: str,
    has_price: bool,
    rejects: _Rejects,
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
    rejects: _Rejects,
) -> pd.DataFrame:
    """Convert one chunk of records that have the right number of fields."""
    columns = list(zip(*rows, strict=True))
    raw: dict[str, Sequence[Any]] = {name: columns[i] for i, name in enumerate(names)}
    frame, bad = _to_canonical(raw, len(rows), id_column, has_price)
    for pos, reason in bad:
        rejects.add(starts[pos], ends[pos], raw[id_column][pos], reason)
    return frame


def _read_parquet(
    open_binary: Callable[[], Any], source: str, rejects: _Rejects, on_progress: Progress | None
) -> tuple[list[pd.DataFrame], str, bool, dict[int, str]]:
    """Read a parquet file in record batches; a reject's line is its row index + 1."""
    import pyarrow.parquet as pq

    frames: list[pd.DataFrame] = []
    raws: dict[int, str] = {}
    with open_binary() as handle:
        data = pq.ParquetFile(io.BytesIO(handle.read()))
        names = list(data.schema_arrow.names)
        id_column, has_price = _check_columns(names, source)
        offset = 0
        for batch in data.iter_batches(batch_size=CHUNK_ROWS):
            chunk = batch.to_pandas()
            raw = {name: chunk[name].to_numpy(dtype=object) for name in chunk.columns}
            frame, bad = _to_canonical(raw, len(chunk), id_column, has_price)
            for pos, reason in bad:
                line = offset + pos + 1
                rejects.add(line, line, raw[id_column][pos], reason)
                raws[line] = "\t".join("" if _is_missing(raw[c][pos]) else str(raw[c][pos]) for c in names)
            frames.append(frame)
            offset += len(chunk)
            if on_progress is not None:
                on_progress(offset)
    return frames, id_column, has_price, raws


def _check_columns(names: list[str], source: str) -> tuple[str, bool]:
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


def _to_canonical(
    raw: dict[str, Sequence[Any]], n: int, id_column: str, has_price: bool
) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Parse one chunk of raw column values; returns the kept rows and (position, reason) of the others."""
    problems: dict[int, list[str]] = {}
    ids = _parse_int(raw[id_column], id_column, problems)
    ints = {c: _parse_int(raw[c], c, problems) for c in _INT_COLUMNS}
    price = _parse_price(raw[schema.PRICE], problems) if has_price else np.full(n, np.nan)
    keep = np.ones(n, dtype=bool)
    keep[list(problems)] = False
    frame = pd.DataFrame(
        {
            schema.LISTING_ID: ids[keep],
            "name": _clean_text(raw["name"], keep),
            "item_condition_id": ints["item_condition_id"][keep],
            "category_name": _clean_text(raw["category_name"], keep),
            "brand_name": _clean_text(raw["brand_name"], keep),
            "shipping": ints["shipping"][keep],
            "item_description": _clean_text(raw["item_description"], keep),
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
        reason = f"{column} missing" if _is_missing(value) else f"{column} {_quote(value)} is not an integer"
        problems.setdefault(int(pos), []).append(reason)
    return np.where(ok, num, 0).astype(np.int64)


def _parse_price(values: Sequence[Any], problems: dict[int, list[str]]) -> np.ndarray:
    """Price column: an empty price is kept as NaN (validation decides), text that is not a number is not."""
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    for pos in np.flatnonzero(~np.isfinite(num)):
        value = values[int(pos)]
        if _is_missing(value):
            num[pos] = np.nan
        else:
            problems.setdefault(int(pos), []).append(f"price {_quote(value)} is not a number")
    return num


def _clean_text(values: Sequence[Any], keep: np.ndarray) -> list[str | None]:
    """Strip text; empty or missing becomes None."""
    kept: Iterable[Any] = values if keep.all() else compress(values, keep)
    try:
        return [v.strip() or None for v in kept]
    except AttributeError:  # parquet or odd input: None, NaN or non-str values
        kept = values if keep.all() else compress(values, keep)
        return [None if _is_missing(v) else str(v).strip() or None for v in kept]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _quote(value: Any) -> str:
    text = str(value).strip()
    return repr(text if len(text) <= 50 else text[:47] + "...")


def _fetch_raw(open_text: Callable[[], Any], spans: list[tuple[int, int]]) -> dict[int, str]:
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


def _rejects_frame(rejects: _Rejects, raws: dict[int, str]) -> pd.DataFrame:
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


def _empty_listings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=schema.DTYPES[c]) for c in schema.LISTING_COLUMNS})


def _detect(name: str) -> tuple[str | None, str | None]:
    """(format, compression) from a file name's suffixes, e.g. ``train.tsv.7z`` -> ("tsv", ".7z")."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in _COMPRESSIONS else None
    rest = suffixes[:-1] if compression else suffixes
    return (_FORMATS.get(rest[-1]) if rest else None), compression


@dataclass(frozen=True)
class _Source:
    """A readable listings file: its format and how to open its (decompressed) bytes, possibly twice."""

    path: Path
    fmt: str
    compression: str | None
    member: str | None = None

    def open_binary(self) -> IO[bytes]:
        opener: dict[str | None, Callable[[Path], Any]] = {
            None: lambda p: open(p, "rb"),  # noqa: SIM115 - the caller closes it
            ".gz": gzip.open,
            ".bz2": bz2.open,
            ".xz": lzma.open,
        }
        if self.compression == ".zip":
            # The member keeps the archive's file open after the ZipFile object is closed.
            with zipfile.ZipFile(self.path) as archive:
                return archive.open(str(self.member))
        return opener[self.compression](self.path)

    def open_text(self) -> IO[str]:
        # utf-8-sig drops a BOM; undecodable bytes become U+FFFD instead of failing the whole file.
        return io.TextIOWrapper(self.open_binary(), encoding="utf-8-sig", errors="replace", newline="")


@contextmanager
def open_source(path: Path) -> Iterator[_Source]:
    """Resolve format and compression of ``path``; a 7z member is extracted to a temporary directory."""
    fmt, compression = _detect(path.name)
    member: str | None = None
    if compression in (".zip", ".7z"):
        member = _single_member(path, compression)
        fmt = fmt or _detect(member)[0]
    if fmt is None:
        raise DataFormatError(
            f"{path}: unknown file format; expected .tsv, .csv or .parquet, "
            f"optionally followed by one of {', '.join(_COMPRESSIONS)}"
        )
    if compression != ".7z":
        yield _Source(path, fmt, compression, member)
        return
    import py7zr

    with tempfile.TemporaryDirectory(prefix="price-alchemy-7z-") as tmp:
        with py7zr.SevenZipFile(path) as archive:
            archive.extract(path=tmp, targets=[str(member)])
        yield _Source(Path(tmp) / str(member), fmt, None)


def _single_member(path: Path, compression: str) -> str:
    try:
        if compression == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = [i.filename for i in archive.infolist() if not i.is_dir()]
        else:
            import py7zr

            with py7zr.SevenZipFile(path) as archive:
                names = [i.filename for i in archive.list() if not i.is_directory]
    except Exception as exc:  # corrupt archives raise library-specific errors
        raise DataFormatError(f"{path}: cannot open {compression} archive: {exc}") from exc
    if len(names) != 1:
        raise DataFormatError(f"{path}: expected exactly one file in the archive, found {names}")
    return names[0]


@contextmanager
def _open_writer(path: Path, compression: str | None, member: str) -> Iterator[IO[bytes]]:
    if compression == ".zip":
        with (
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            archive.open(member, "w", force_zip64=True) as handle,
        ):
            yield handle
        return
    openers: dict[str | None, Callable[..., Any]] = {
        None: open,
        ".gz": gzip.open,
        ".bz2": bz2.open,
        ".xz": lzma.open,
    }
    with openers[compression](path, "wb") as handle:
        yield handle
