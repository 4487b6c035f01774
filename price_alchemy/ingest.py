"""Ingest: file -> read (parse rejects) -> validate (GE) -> warehouse + quarantine + saved report.

A batch is identified by the file's content hash unless the caller names it, so ingesting the
same file twice leaves one copy. Rejected rows (unparseable or failing a row rule) always land in
the quarantine table with their reason, whether or not the batch as a whole passes; the batch's
good rows land in ``listings`` only when it passes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from price_alchemy.data.files import Progress, ReadResult, read_listings
from price_alchemy.data.warehouse import Warehouse
from price_alchemy.errors import DataValidationError
from price_alchemy.params import ValidationParams
from price_alchemy.validation import ValidationReport, raise_for_verdict, save_report, validate_listings

log = logging.getLogger(__name__)


@dataclass
class CheckedBatch:
    """A read and validated batch: what would load, what is quarantined, and the verdict."""

    batch_id: str
    read: ReadResult
    report: ValidationReport
    max_bad_fraction: float
    report_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def valid(self) -> pd.DataFrame:
        return self.report.valid

    @property
    def quarantine(self) -> pd.DataFrame:
        frames = [f for f in (self.read.rejects, self.report.quarantine) if not f.empty]
        combined = pd.concat(frames, ignore_index=True) if frames else self.report.quarantine.iloc[0:0]
        return combined.assign(batch_id=self.batch_id)

    @property
    def bad_fraction(self) -> float:
        """Unparseable plus rule-breaking rows, over every record in the file."""
        total = self.read.n_records
        return (len(self.read.rejects) + self.report.n_bad) / total if total else 0.0

    @property
    def passed(self) -> bool:
        return self.report.passed and self.bad_fraction <= self.max_bad_fraction

    def raise_for_verdict(self) -> None:
        """Raise ``DataValidationError`` naming why the batch failed (no-op when it passed)."""
        raise_for_verdict(self.report)
        if self.bad_fraction > self.max_bad_fraction:
            raise DataValidationError(
                f"batch {self.batch_id}: {len(self.read.rejects)} unparseable + {self.report.n_bad} invalid rows "
                f"of {self.read.n_records} = {self.bad_fraction:.2%} > max_bad_fraction {self.max_bad_fraction:.2%}",
                failed=["max_bad_fraction"],
                bad_fraction=self.bad_fraction,
            )

    def reason_counts(self) -> pd.Series:
        """Quarantined rows per reason, most frequent first (a row may break several rules)."""
        return self.quarantine["reason"].str.split("; ").explode().value_counts()

    def summary(self) -> str:
        return (
            f"{self.report.summary()} Unparseable rows: {len(self.read.rejects)}; "
            f"total bad fraction {self.bad_fraction:.2%}."
        )


def batch_id_for(path: Path) -> str:
    """``<file stem>-<first 12 hex of its SHA-256>``: same content, same batch."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", path.name.split(".")[0])[:40] or "batch"
    return f"{stem}-{digest.hexdigest()[:12]}"


def check_file(
    path: Path,
    params: ValidationParams,
    *,
    batch_id: str | None = None,
    on_progress: Progress | None = None,
) -> CheckedBatch:
    """Read and validate a listings file without touching the warehouse."""
    batch = batch_id or batch_id_for(path)
    read = read_listings(path, on_progress=on_progress)
    report = validate_listings(read.listings, params, batch_id=batch, require_price=read.has_price)
    return CheckedBatch(batch, read, report, params.max_bad_fraction)


def ingest_file(
    path: Path,
    warehouse: Warehouse,
    params: ValidationParams,
    reports_dir: Path,
    *,
    batch_id: str | None = None,
    on_progress: Progress | None = None,
) -> CheckedBatch:
    """Check a file, record its quarantine and report, and load its valid rows if the batch passes.

    Raises ``DataValidationError`` (after recording the quarantine and the report) when it fails.
    """
    checked = check_file(path, params, batch_id=batch_id, on_progress=on_progress)
    quarantined = warehouse.load_quarantine(checked.quarantine, checked.batch_id)
    checked.report_paths = save_report(checked.report, reports_dir / "validation")
    log.info("%s", checked.summary())
    if not checked.passed:
        log.warning("batch %s rejected; %d rows quarantined, nothing loaded", checked.batch_id, quarantined)
        checked.raise_for_verdict()
    loaded = warehouse.load_batch(checked.valid, checked.batch_id)
    log.info("batch %s: %d rows loaded, %d quarantined", checked.batch_id, loaded, quarantined)
    return checked
