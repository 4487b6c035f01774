"""The outcome of validating one batch: per-expectation results, good rows, quarantine and the verdict.

A batch passes when no critical (batch-level) expectation failed and the fraction of quarantined
rows is at most ``max_bad_fraction``. ``raise_for_verdict`` turns a failed verdict into a
``DataValidationError`` for the CLI, the API and the DAG tasks to translate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from price_alchemy.errors import DataValidationError


@dataclass
class ExpectationOutcome:
    """One expectation's result, reduced to what logs, reports and error messages need."""

    name: str
    column: str | None
    critical: bool
    success: bool
    observed: Any
    unexpected_count: int
    description: str = ""


@dataclass
class ValidationReport:
    """Everything one validation run decided about a batch of listings."""

    batch_id: str
    n_rows: int
    outcomes: list[ExpectationOutcome]
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    max_bad_fraction: float
    # GE's own validation results (unexpected lists trimmed) and suites as dicts, kept so that
    # ``save_report`` can render real Data Docs without running the suite again.
    ge_results: list[Any] = field(default_factory=list, repr=False, compare=False)
    ge_suites: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def n_bad(self) -> int:
        return len(self.quarantine)

    @property
    def bad_fraction(self) -> float:
        return self.n_bad / self.n_rows if self.n_rows else 0.0

    @property
    def failed_critical(self) -> list[str]:
        """Names of the critical expectations that failed (or could not be evaluated)."""
        return [o.name for o in self.outcomes if o.critical and not o.success]

    @property
    def too_many_bad_rows(self) -> bool:
        return self.bad_fraction > self.max_bad_fraction

    @property
    def passed(self) -> bool:
        return not self.failed_critical and not self.too_many_bad_rows

    def reason_counts(self) -> dict[str, int]:
        """How many quarantined rows each reason applies to (a row may have several)."""
        if self.quarantine.empty:
            return {}
        counts = self.quarantine["reason"].str.split("; ").explode().value_counts()
        return {str(reason): int(n) for reason, n in counts.items()}

    def summary(self) -> str:
        """One readable paragraph for logs and the CLI."""
        met = sum(o.success for o in self.outcomes)
        failed = [_describe_failure(o) for o in self.outcomes if o.critical and not o.success]
        reasons = ", ".join(f"{r} ({n})" for r, n in list(self.reason_counts().items())[:5]) or "none"
        return (
            f"Batch {self.batch_id} {'PASSED' if self.passed else 'FAILED'} validation: "
            f"{self.n_rows} rows, {len(self.valid)} valid, {self.n_bad} quarantined "
            f"({self.bad_fraction:.2%}; max_bad_fraction {self.max_bad_fraction:.2%}); "
            f"{met}/{len(self.outcomes)} expectations met; "
            f"critical failures: {'; '.join(failed) or 'none'}; quarantine reasons: {reasons}."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (no row data beyond the reason counts)."""
        return {
            "batch_id": self.batch_id,
            "passed": self.passed,
            "n_rows": self.n_rows,
            "n_valid": len(self.valid),
            "n_bad": self.n_bad,
            "bad_fraction": self.bad_fraction,
            "max_bad_fraction": self.max_bad_fraction,
            "failed_critical": self.failed_critical,
            "reason_counts": self.reason_counts(),
            "outcomes": [asdict(o) for o in self.outcomes],
            "summary": self.summary(),
        }


def _describe_failure(outcome: ExpectationOutcome) -> str:
    what = outcome.description or outcome.name
    observed = json.dumps(outcome.observed, default=str)
    return f"{outcome.name} [{what}] observed {observed}"


def raise_for_verdict(report: ValidationReport) -> None:
    """Raise ``DataValidationError`` naming what failed when the batch did not pass; else do nothing."""
    if report.passed:
        return
    problems = [
        "critical expectation failed: " + _describe_failure(o)
        for o in report.outcomes
        if o.critical and not o.success
    ]
    if report.too_many_bad_rows:
        top = ", ".join(f"{r} ({n})" for r, n in list(report.reason_counts().items())[:3])
        problems.append(
            f"bad_fraction {report.bad_fraction:.4f} > max_bad_fraction {report.max_bad_fraction:.4f} "
            f"({report.n_bad} of {report.n_rows} rows quarantined; top reasons: {top})"
        )
    raise DataValidationError(
        f"batch {report.batch_id} failed validation: " + "; ".join(problems),
        failed=report.failed_critical,
        bad_fraction=report.bad_fraction,
    )
