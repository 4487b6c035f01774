"""Bytes on disk: a listings file's format and compression, and opening it decompressed.

The format comes from the suffixes (``train.tsv.7z`` is tab-separated text in a 7z archive);
``.gz``, ``.bz2`` and ``.xz`` are streams, ``.zip`` and ``.7z`` archives must hold exactly one file
(whose name gives the format when the archive's name does not, e.g. ``bundle.zip``). Nothing here
parses records: :mod:`price_alchemy.data.readers` does that on the handles opened here.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from price_alchemy.errors import DataFormatError

_FORMATS = {".tsv": "tsv", ".csv": "csv", ".parquet": "parquet"}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".7z")
SEPARATORS = {"tsv": "\t", "csv": ","}
"""Field separator of each delimited format."""


def detect(name: str) -> tuple[str | None, str | None]:
    """(format, compression) from a file name's suffixes, e.g. ``train.tsv.7z`` -> ("tsv", ".7z")."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in _COMPRESSIONS else None
    rest = suffixes[:-1] if compression else suffixes
    return (_FORMATS.get(rest[-1]) if rest else None), compression


@dataclass(frozen=True)
class Source:
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
def open_source(path: Path) -> Iterator[Source]:
    """Resolve format and compression of ``path``; a 7z member is extracted to a temporary directory."""
    fmt, compression = detect(path.name)
    member: str | None = None
    if compression in (".zip", ".7z"):
        member = _single_member(path, compression)
        fmt = fmt or detect(member)[0]
    if fmt is None:
        raise DataFormatError(
            f"{path}: unknown file format; expected .tsv, .csv or .parquet, "
            f"optionally followed by one of {', '.join(_COMPRESSIONS)}"
        )
    if compression != ".7z":
        yield Source(path, fmt, compression, member)
        return
    import py7zr

    with tempfile.TemporaryDirectory(prefix="price-alchemy-7z-") as tmp:
        with py7zr.SevenZipFile(path) as archive:
            archive.extract(path=tmp, targets=[str(member)])
        yield Source(Path(tmp) / str(member), fmt, None)


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
def open_writer(path: Path, compression: str | None, member: str) -> Iterator[IO[bytes]]:
    """A binary handle that writes ``path`` compressed (a ``.zip`` gets one member named ``member``)."""
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
