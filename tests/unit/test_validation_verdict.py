"""The verdict logic of ``ValidationReport`` on hand-built reports (no Great Expectations run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.errors import DataValidationError
from price_alchemy.validation import ExpectationOutcome, ValidationReport, raise_for_verdict

pytestmark = pytest.mark.unit


def _quarantine(reasons: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch_id": "b1",
            "stage": "validate",
            "line": [None] * len(reasons),
            "listing_id": [str(i) for i in range(len(reasons))],
            "reason": reasons,
            "raw": ["{}"] * len(reasons),
        },
        columns=list(schema.QUARANTINE_COLUMNS),
    )


def _report(
    *, n_rows: int = 100, reasons: list[str] | None = None, outcomes: list[ExpectationOutcome] | None = None
) -> ValidationReport:
    reasons = reasons or []
    return ValidationReport(
        batch_id="b1",
        n_rows=n_rows,
        outcomes=outcomes or [],
        valid=pd.DataFrame({"listing_id": range(n_rows - len(reasons))}),
        quarantine=_quarantine(reasons),
        max_bad_fraction=0.05,
    )


MEDIAN_FAILED = ExpectationOutcome(
    name="price_median",
    column="price",
    critical=True,
    success=False,
    observed=1700.0,
    unexpected_count=0,
    description="median of prices in (0, max_price] within 5..100",
)
ROW_RULE_FAILED = ExpectationOutcome(
    name="shipping_in_set", column="shipping", critical=False, success=False, observed={}, unexpected_count=3
)


def test_bad_fraction_at_threshold_passes() -> None:
    report = _report(reasons=["name blank"] * 5, outcomes=[ROW_RULE_FAILED])
    assert report.n_bad == 5 and report.bad_fraction == pytest.approx(0.05)
    assert report.passed  # equal to the threshold is allowed
    raise_for_verdict(report)


def test_bad_fraction_above_threshold_fails_with_threshold_in_message() -> None:
    report = _report(reasons=["name blank"] * 4 + ["shipping not in {0, 1}; name blank"] * 2)
    assert not report.passed and report.failed_critical == []
    with pytest.raises(DataValidationError) as caught:
        raise_for_verdict(report)
    message = str(caught.value)
    assert "max_bad_fraction 0.0500" in message and "bad_fraction 0.0600" in message
    assert "name blank (6)" in message
    assert caught.value.bad_fraction == pytest.approx(0.06) and caught.value.failed == []


def test_failed_critical_expectation_fails_with_observed_value() -> None:
    report = _report(outcomes=[MEDIAN_FAILED, ROW_RULE_FAILED])
    assert report.failed_critical == ["price_median"]
    assert not report.passed
    with pytest.raises(DataValidationError) as caught:
        raise_for_verdict(report)
    assert "price_median" in str(caught.value) and "1700.0" in str(caught.value)
    assert "max_bad_fraction" not in str(caught.value)  # the row fraction was fine
    assert caught.value.failed == ["price_median"]


def test_empty_batch_has_zero_bad_fraction() -> None:
    assert _report(n_rows=0).bad_fraction == 0.0


def test_reason_counts_split_multiple_reasons() -> None:
    report = _report(reasons=["a", "a; b", "b"])
    assert report.reason_counts() == {"a": 2, "b": 2}


def test_summary_mentions_verdict_counts_and_failures() -> None:
    summary = _report(reasons=["name blank"], outcomes=[MEDIAN_FAILED]).summary()
    assert summary.startswith("Batch b1 FAILED")
    assert "100 rows, 99 valid, 1 quarantined" in summary
    assert "price_median" in summary and "name blank (1)" in summary
    assert "\n" not in summary


def test_to_dict_is_json_and_round_trips_counts() -> None:
    report = _report(reasons=["name blank"] * 2, outcomes=[MEDIAN_FAILED])
    loaded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert (loaded["n_rows"], loaded["n_valid"], loaded["n_bad"]) == (100, 98, 2)
    assert loaded["passed"] is False and loaded["failed_critical"] == ["price_median"]
    assert loaded["outcomes"][0]["observed"] == 1700.0


def test_importing_validation_does_not_import_great_expectations() -> None:
    code = "import sys, price_alchemy.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
