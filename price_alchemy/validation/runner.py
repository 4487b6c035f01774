"""Run the expectation suites on a listings frame and split it into valid rows and a quarantine.

GE decides which rows are bad: the row suite runs with ``COMPLETE`` results and each failing row is
taken from GE's ``unexpected_index_list`` (positions, because the frame is given to GE with a fresh
``RangeIndex``). The only decision made here is the one GE cannot express: among rows sharing a
``listing_id`` (all flagged by ``expect_column_values_to_be_unique``) the first is kept.
A rule GE could not evaluate at all (missing column, wrong type) gives no indices; it is reported
as a failed critical outcome instead, since nothing it should have checked was checked.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy import schema
from price_alchemy.params import ValidationParams
from price_alchemy.validation.gx_context import ephemeral_context
from price_alchemy.validation.report import ExpectationOutcome, ValidationReport
from price_alchemy.validation.suite import BATCH_SEVERITY, DUPLICATE_ID_RULE, build_suites

log = logging.getLogger(__name__)

# Row rules: every failing index, but no sample lists and no pandas "query" string of all indices.
# GE still collects every unexpected *value* under COMPLETE; the list is trimmed right after use.
ROW_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
}
# Batch rules: counts and a few examples only (``mostly`` rules would otherwise list every null).
BATCH_RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 5}
KEPT_EXAMPLES = 20  # unexpected values/indices kept in the stored GE result for Data Docs
RAW_MAX_CHARS = 1000


def _jsonable(value: Any, max_chars: int = 200) -> Any:
    """Numpy scalars, NaN and long strings made safe for ``json.dumps``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, max_chars) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, max_chars) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value if len(value) <= max_chars else value[:max_chars] + "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _error_message(exception_info: dict[str, Any] | None) -> str | None:
    """GE puts errors either flat in ``exception_info`` or keyed by the metric that raised."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    messages = [
        str(i.get("exception_message")) for i in infos if isinstance(i, dict) and i.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def _observed(result: dict[str, Any], error: str | None) -> Any:
    if error:
        return {"error": error[:500]}
    if "observed_value" in result:
        details = result.get("details", {}).get("mismatched")
        observed = _jsonable(result["observed_value"])
        return {"value": observed, "mismatched": _jsonable(details)} if details else observed
    examples = result.get("unexpected_list") or result.get("partial_unexpected_list") or []
    return {
        "unexpected_count": int(result.get("unexpected_count") or 0),
        "unexpected_percent": round(float(result.get("unexpected_percent") or 0.0), 4),
        "examples": _jsonable(list(examples[:3]), max_chars=80),
    }


def _later_duplicates(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """Positions of every occurrence of a duplicated id except the first one."""
    positions = np.sort(positions)
    ids = pd.Series(frame[schema.LISTING_ID].to_numpy()[positions])
    return positions[ids.duplicated(keep="first").to_numpy()]


def _raw_json(rows: pd.DataFrame, chunk: int = 100_000) -> list[str]:
    """Each row as compact JSON (NaN as null), cut to RAW_MAX_CHARS.

    pandas' C encoder is ~10x faster than ``json.dumps`` per row, which matters when a whole
    1.5M-row batch is bad; it escapes "/" as "\\/", undone here for readable categories.
    """
    raw: list[str] = []
    for start in range(0, len(rows), chunk):
        text = rows.iloc[start : start + chunk].to_json(orient="records", lines=True, force_ascii=False)
        raw += [line[:RAW_MAX_CHARS] for line in text.replace("\\/", "/").rstrip("\n").split("\n")]
    return raw


def _quarantine(
    frame: pd.DataFrame, flagged: list[tuple[np.ndarray, str]], batch_id: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Quarantine rows (reasons in suite order, joined by "; ") and their positions."""
    flagged = [(pos, reason) for pos, reason in flagged if len(pos)]
    if not flagged:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in schema.QUARANTINE_COLUMNS})
        return empty, np.empty(0, dtype=np.int64)
    pos = np.concatenate([p for p, _ in flagged])
    order = np.concatenate([np.full(len(p), i) for i, (p, _) in enumerate(flagged)])
    texts = np.concatenate([np.full(len(p), reason, dtype=object) for p, reason in flagged])
    by_row = np.lexsort((order, pos))  # by position, then by rule order
    pos, texts = pos[by_row], texts[by_row]
    positions, starts, counts = np.unique(pos, return_index=True, return_counts=True)
    reasons = texts[starts]
    # Most bad rows break one rule; join only where several apply (a Python groupby-join over
    # 1.5M rows of a wholly bad batch takes tens of seconds).
    for i in np.flatnonzero(counts > 1):
        reasons[i] = "; ".join(texts[starts[i] : starts[i] + counts[i]])
    bad = frame.iloc[positions]
    raw = _raw_json(bad)
    ids = bad[schema.LISTING_ID].astype(str).to_numpy() if schema.LISTING_ID in bad else [None] * len(bad)
    quarantine = pd.DataFrame(
        {
            "batch_id": batch_id,
            "stage": "validate",
            "line": pd.Series([None] * len(bad), dtype=object),
            "listing_id": pd.Series(ids, dtype=object),
            "reason": pd.Series(reasons, dtype=object),
            "raw": pd.Series(raw, dtype=object),
        },
        columns=list(schema.QUARANTINE_COLUMNS),
    )
    return quarantine, positions


def _run_suites(
    frame: pd.DataFrame, params: ValidationParams, batch_id: str, require_price: bool
) -> list[tuple[Any, Any]]:
    """Run both suites on ``frame`` in one in-memory GE context; returns (suite, GE result) pairs.

    ``Batch.validate`` is used rather than ``ValidationDefinition.run``: the latter also serializes
    each result into the context's store, which costs ~10 s per 300k unexpected indices when a
    whole batch is bad. The results are stored later, trimmed, by ``save_report``.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    ctx = ephemeral_context()
    batch = (
        ctx.data_sources.add_pandas("listings")
        .add_dataframe_asset("listings")
        .add_batch_definition_whole_dataframe("whole_frame")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    run_id = RunIdentifier(run_name=batch_id, run_time=dt.datetime.now(dt.UTC))
    results: list[tuple[Any, Any]] = []
    for suite, result_format in zip(
        build_suites(params, require_price=require_price),
        (ROW_RESULT_FORMAT, BATCH_RESULT_FORMAT),
        strict=True,
    ):
        added = ctx.suites.add(suite)  # gives each expectation the id used to keep suite order
        with warnings.catch_warnings():
            # GE matches regexes with pandas ``str.contains``, which warns that CATEGORY_PATTERN
            # has a group; only match/no-match is used, so the warning is noise.
            warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression")
            result = batch.validate(added, result_format=result_format)
        # What ValidationDefinition.run would add; Data Docs file pages under run name and time.
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_id.run_time
        results.append((added, result))
    return results


def validate_listings(
    listings: pd.DataFrame, params: ValidationParams, *, batch_id: str, require_price: bool = True
) -> ValidationReport:
    """Validate a canonical listings frame; bad data gives a failed report, never an exception.

    ``require_price=False`` is for test-format files (price all NaN): price must then be absent or
    in range, and the price distribution checks are skipped.
    """
    started = time.perf_counter()
    index = listings.index
    positional = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    frame = listings if positional else listings.reset_index(drop=True)
    ran = _run_suites(frame, params, batch_id, require_price)

    outcomes: list[ExpectationOutcome] = []
    flagged: list[tuple[np.ndarray, str]] = []
    for suite, suite_result in ran:
        # GE does not return results in suite order; sort so reasons and reports are stable.
        order = {e.id: i for i, e in enumerate(suite.expectations)}
        for result in sorted(suite_result.results, key=lambda r: order[r.expectation_config.id]):
            config = result.expectation_config
            error = _error_message(result.exception_info)
            critical = config.severity == BATCH_SEVERITY or error is not None
            name, description = config.meta["name"], config.meta["description"]
            outcomes.append(
                ExpectationOutcome(
                    name=name,
                    column=config.kwargs.get("column"),
                    critical=critical,
                    success=bool(result.success) and error is None,
                    observed=_observed(result.result, error),
                    unexpected_count=int(result.result.get("unexpected_count") or 0),
                    description=description,
                )
            )
            indices = result.result.get("unexpected_index_list")
            if config.severity != BATCH_SEVERITY and indices:
                positions = np.asarray(indices, dtype=np.int64)
                if name == DUPLICATE_ID_RULE:
                    positions = _later_duplicates(frame, positions)
                flagged.append((positions, description))
            _trim_for_docs(result.result)

    quarantine, bad_positions = _quarantine(frame, flagged, batch_id)
    keep = np.ones(len(frame), dtype=bool)
    keep[bad_positions] = False
    valid = frame[keep].reset_index(drop=True)
    report = ValidationReport(
        batch_id=batch_id,
        n_rows=len(frame),
        outcomes=outcomes,
        valid=valid,
        quarantine=quarantine,
        max_bad_fraction=params.max_bad_fraction,
        ge_results=[result for _, result in ran],
        ge_suites=[suite.to_json_dict() for suite, _ in ran],
    )
    log.info(
        "validated batch %s in %.1fs: %d rows, %d quarantined (%.2f%%), critical failures %s, passed=%s",
        batch_id,
        time.perf_counter() - started,
        report.n_rows,
        report.n_bad,
        100 * report.bad_fraction,
        report.failed_critical or "none",
        report.passed,
    )
    return report


def _trim_for_docs(result: dict[str, Any]) -> None:
    """Keep a few examples of GE's full unexpected lists so stored results and Data Docs stay small."""
    for key in ("unexpected_list", "unexpected_index_list", "partial_unexpected_list"):
        if key in result:
            result[key] = _jsonable(list(result[key][:KEPT_EXAMPLES]))
    if "unexpected_list" in result:
        result["partial_unexpected_list"] = result["unexpected_list"]
