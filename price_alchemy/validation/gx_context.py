"""Lazy, quiet access to Great Expectations.

``import great_expectations`` costs ~6 s and logs hundreds of INFO lines, so the validation package
imports it only inside the functions that run a suite or render Data Docs, through this module.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext


def import_gx() -> ModuleType:
    """Import ``great_expectations`` with its logger at WARNING unless the caller chose a level."""
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def ephemeral_context() -> AbstractDataContext:
    """An in-memory GE context: no project directory, no progress bars, no analytics, no docs sites."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
        data_docs_sites={},
    )
    return gx.get_context(mode="ephemeral", project_config=config)
