"""Validation stage: a Great Expectations suite that gates each batch of listings.

``validate_listings`` runs the suite and returns a ``ValidationReport`` (good rows, quarantined rows
with reasons, per-expectation outcomes, verdict); ``raise_for_verdict`` turns a failed verdict into
``DataValidationError``; ``save_report`` writes the JSON summary and GE Data Docs. Great Expectations
itself is imported only when a suite is built or run, so importing this package stays cheap.
"""

from __future__ import annotations

from price_alchemy.validation.artifacts import save_report
from price_alchemy.validation.report import ExpectationOutcome, ValidationReport, raise_for_verdict
from price_alchemy.validation.runner import validate_listings
from price_alchemy.validation.suite import build_suites

__all__ = [
    "ExpectationOutcome",
    "ValidationReport",
    "build_suites",
    "raise_for_verdict",
    "save_report",
    "validate_listings",
]
