"""Domain exceptions. Raised inside the package; the CLI, the API and the DAG tasks translate them."""

from __future__ import annotations


class PriceAlchemyError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(PriceAlchemyError):
    """A setting or a parameters file is missing or invalid."""


class DataFormatError(PriceAlchemyError):
    """A listings file cannot be read at all (unknown format, missing required columns, ...)."""


class DataValidationError(PriceAlchemyError):
    """A batch of listings failed validation: a critical expectation failed or too many rows are bad."""

    def __init__(self, message: str, *, failed: list[str] | None = None, bad_fraction: float | None = None):
        super().__init__(message)
        self.failed = failed or []
        self.bad_fraction = bad_fraction


class WarehouseError(PriceAlchemyError):
    """The warehouse (DuckDB or BigQuery) refused an operation."""


class TrainingError(PriceAlchemyError):
    """Training cannot proceed (e.g. too few usable rows)."""


class ModelNotFoundError(PriceAlchemyError):
    """No registered model version matches the requested name, alias or URI."""
