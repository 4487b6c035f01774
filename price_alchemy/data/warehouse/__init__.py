"""Warehouse backends for listings and quarantined rows: DuckDB (embedded default) and BigQuery.

``open_warehouse(settings)`` picks the backend named by ``settings.warehouse``; both pass the
same contract tests (``tests/integration/test_warehouse_contract.py``). Backends are imported
lazily so that using DuckDB never imports the Google client.
"""

from __future__ import annotations

from price_alchemy.config import Settings
from price_alchemy.data.warehouse.base import Warehouse
from price_alchemy.errors import ConfigError

__all__ = ["Warehouse", "open_warehouse"]


def open_warehouse(settings: Settings) -> Warehouse:
    """Open (and create on first use) the warehouse configured in ``settings``."""
    if settings.warehouse == "duckdb":
        from price_alchemy.data.warehouse.duckdb_backend import DuckDBWarehouse

        return DuckDBWarehouse(settings.duckdb_path)
    if settings.warehouse == "bigquery":
        from price_alchemy.data.warehouse.bigquery_backend import BigQueryWarehouse

        return BigQueryWarehouse(settings)
    raise ConfigError(f"unknown warehouse backend {settings.warehouse!r}")
