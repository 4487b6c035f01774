"""Write a validation report to disk: a JSON summary and a Great Expectations Data Docs site.

The Data Docs are rendered by GE itself from the validation results kept on the report (their
unexpected lists trimmed to a few examples), so the suite does not run a second time.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from price_alchemy.validation.gx_context import ephemeral_context, import_gx
from price_alchemy.validation.report import ValidationReport

log = logging.getLogger(__name__)

DATA_DOCS_DIR = "data_docs"
_SITE_NAME = "price_alchemy_validation"


def _safe_name(batch_id: str) -> str:
    """A file name from a batch id (which may hold slashes, colons, ...)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", batch_id).strip("._") or "batch"


def _build_data_docs(report: ValidationReport, site_dir: Path) -> Path:
    """Render the report's GE results into a static Data Docs site; returns its index.html."""
    gx = import_gx()
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    ctx = ephemeral_context()
    ctx.add_data_docs_site(
        _SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for suite in report.ge_suites:
        ctx.suites.add(gx.ExpectationSuite(name=suite["name"], expectations=suite["expectations"]))
    for result in report.ge_results:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=result.meta["run_id"],
            batch_identifier=result.batch_id,
        )
        ctx.validation_results_store.set(key, result)
    ctx.build_data_docs(site_names=[_SITE_NAME])
    index = site_dir / "index.html"
    if not index.is_file():  # GE reports a URL; make sure the file is really there
        raise FileNotFoundError(f"GE did not write Data Docs index {index}")
    return index


def save_report(report: ValidationReport, directory: Path) -> dict[str, Path]:
    """Write ``<batch_id>.json`` and the Data Docs site under ``directory/data_docs``.

    Returns ``{"json": <json path>, "data_docs": <index.html of the site>}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{_safe_name(report.batch_id)}.json"
    payload: dict[str, Any] = report.to_dict()
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    index = _build_data_docs(report, directory / DATA_DOCS_DIR)
    log.info("saved validation report of batch %s to %s (Data Docs %s)", report.batch_id, json_path, index)
    return {"json": json_path, "data_docs": index}
