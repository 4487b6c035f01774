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


class ModelRefusedError(ModelNotFoundError):
    """A model exists but is refused before any of its bytes are deserialized: not in the skops
    format, holding a type outside the package's trusted list, or not the file registered (digest)."""


class PromotionLockError(PriceAlchemyError):
    """Another process has been deciding a promotion for longer than we may wait: try again later."""


class MonitoringError(PriceAlchemyError):
    """The drift check cannot run (Elasticsearch unreachable or refusing the query)."""


class ShippingError(PriceAlchemyError):
    """The events could not be shipped (target unreachable for too long, another shipper running)."""


class EventLogError(PriceAlchemyError):
    """The durable event log cannot be opened for writing (e.g. no free writer stream)."""


class EventLogFullError(EventLogError):
    """The event log holds its maximum size of events not yet shipped: this event is not written."""


class TransientError(Exception):
    """A shipping sink could not deliver the whole batch now (target down, overloaded, timing out).

    Internal to the shipper, which retries the batch; never reaches a user as such.
    """


class InvalidEventError(ValueError):
    """A request event that no retry can deliver (no id, no usable timestamp): it is dead-lettered."""


# --- serving: the API's exception handlers turn these into HTTP answers ---------------------------
class ModelNotReadyError(PriceAlchemyError):
    """No model is loaded yet (or none could be): the API answers 503."""


class PredictionError(PriceAlchemyError):
    """The model failed on a batch (a bug, not bad input: inputs are validated before): a 500."""


class AuthenticationError(PriceAlchemyError):
    """Missing or wrong API key: the API answers 401."""


class ExplanationUnavailableError(PriceAlchemyError):
    """The served model cannot explain its prices (an estimator the explainer does not know)."""
