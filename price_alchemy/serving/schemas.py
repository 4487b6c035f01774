"""Request and response bodies of the API; limits come from :mod:`price_alchemy.schema`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from price_alchemy.schema import (
    BRAND_MAX_LEN,
    CATEGORY_MAX_LEN,
    CATEGORY_PATTERN,
    CONDITIONS,
    DESCRIPTION_MAX_LEN,
    NAME_MAX_LEN,
    SHIPPING_VALUES,
)

EXAMPLE_LISTING: dict[str, Any] = {
    "name": "Nike Air Max 90 sneakers, size 10",
    "item_condition_id": 3,
    "category_name": "Men/Shoes/Athletic",
    "brand_name": "Nike",
    "shipping": 1,
    "item_description": "Worn a few times, no box. Smoke-free home.",
}


class Listing(BaseModel):
    """One listing in the Mercari format (no price: that is what the API suggests)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_LISTING]})

    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX_LEN, description="Listing title.")]
    item_condition_id: Annotated[
        int,
        Field(
            strict=True,
            ge=min(CONDITIONS),
            le=max(CONDITIONS),
            description="Condition, 1 (new) to 5 (poor).",
        ),
    ]
    category_name: Annotated[
        str | None,
        Field(
            default=None,
            max_length=CATEGORY_MAX_LEN,
            pattern=CATEGORY_PATTERN,
            description='Category path with at least three levels, e.g. "Men/Shoes/Athletic".',
        ),
    ]
    brand_name: Annotated[str | None, Field(default=None, max_length=BRAND_MAX_LEN, description="Brand.")]
    shipping: Annotated[
        int,
        Field(
            strict=True,
            ge=min(SHIPPING_VALUES),
            le=max(SHIPPING_VALUES),
            description="1 if the seller pays shipping, 0 if the buyer does.",
        ),
    ]
    item_description: Annotated[
        str | None, Field(default=None, max_length=DESCRIPTION_MAX_LEN, description="Free-text description.")
    ]


EXPLAIN_DESCRIPTION = (
    "true: also return, per listing, the effects that pushed its price up and down and the most "
    "similar training listings (see docs/serving.md, Why this price). Must be a JSON boolean."
)


class PredictRequest(Listing):
    """One listing, and whether to explain its price."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [EXAMPLE_LISTING, {**EXAMPLE_LISTING, "explain": True}]},
    )

    explain: Annotated[bool, Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)]


class BatchRequest(BaseModel):
    """Several listings; the route's model sets the real maximum (``max_batch_size``)."""

    model_config = ConfigDict(extra="forbid")

    listings: list[Listing]
    explain: Annotated[bool, Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)]


def batch_request_model(max_batch_size: int) -> type[BatchRequest]:
    """``BatchRequest`` whose ``listings`` holds 1..``max_batch_size`` items (shown in OpenAPI)."""
    listings_field: Any = (
        list[Listing],
        Field(
            min_length=1,
            max_length=max_batch_size,
            description=f"1 to {max_batch_size} listings; predictions come back in the same order.",
        ),
    )
    return create_model(
        "BatchPredictRequest",
        __base__=BatchRequest,
        listings=listings_field,
    )


class PriceRange(BaseModel):
    """A range that about ``coverage`` of held-out listings sold inside (see docs/serving.md)."""

    low: float = Field(description="Lower end, dollars.")
    high: float = Field(description="Upper end, dollars.")
    coverage: float = Field(description="Share of held-out test listings whose price fell in their range.")


class Factor(BaseModel):
    feature: str = Field(description='A feature of the listing, e.g. \'name: "iphone"\', "brand: Apple".')
    effect: float = Field(description="What it added to the predicted log1p(price).")


class Factors(BaseModel):
    up: list[Factor] = Field(description="Up to 5 features that raised the price most, largest first.")
    down: list[Factor] = Field(description="Up to 5 features that lowered it most, most negative first.")


class SimilarListing(BaseModel):
    name: str | None
    brand_name: str | None
    category_name: str | None
    item_condition_id: int
    price: float = Field(description="Its selling price, dollars.")
    similarity: float = Field(description="Cosine similarity of the text features, 0 to 1.")


class Explanation(BaseModel):
    """``baseline + sum(factors) + others == log_price``; ``price == expm1(max(log_price, 0))``."""

    log_price: float = Field(description="The model's log1p(price) before rounding.")
    baseline: float = Field(description="The model's log1p(price) before any feature of the listing.")
    factors: Factors
    others: float = Field(description="Sum of the effects of all other features.")
    similar: list[SimilarListing] | None = Field(
        description="The 5 most similar training listings, most similar first; null when the model "
        "keeps none (see similar_unavailable)."
    )
    similar_unavailable: str | None = Field(default=None, description="Why similar is null.")


def _absent(value: object) -> bool:
    return value is None


class Prediction(BaseModel):
    price: float = Field(description="Suggested price, dollars.")
    price_range: PriceRange | None = Field(
        description="Calibrated range; null when the model was trained without calibration data."
    )
    explanation: Explanation | None = Field(
        default=None,
        exclude_if=_absent,
        description='Only with "explain": true: why this price (absent otherwise).',
    )


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str


class PredictResponse(Prediction):
    request_id: str = Field(description="Also in the X-Request-ID header and in the request event.")
    model: ModelRef


class BatchPredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    predictions: list[Prediction] = Field(description="One per listing, in request order.")


class IntervalInfo(BaseModel):
    coverage: float
    log_residual_low: float
    log_residual_high: float
    method: str | None = None
    adaptive: bool = Field(
        default=False,
        description="Each listing's range is as wide as its own scale (normalized split conformal); "
        "the log residuals are then in units of that scale.",
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str | None
    trained_at: datetime | None = Field(description="When the version was registered (end of training).")
    test_rmsle: float | None
    price_interval: IntervalInfo | None
    source: Literal["registry", "cache"] = Field(
        description="Where it was loaded from: the registry, or the local cache when MLflow was unreachable."
    )
    loaded_at: datetime
    load_error: str | None = Field(
        default=None,
        description="Why the last load or refresh failed while this model kept serving (a refused or "
        "unreachable version); null if none failed since. Only when an API key is configured: it names "
        "internal hosts and paths.",
    )
    refused_version: str | None = Field(
        default=None,
        description="The version the alias now points at, refused as unsafe to load (not skops, an "
        "untrusted type, or files that differ from their registered digest); this model keeps serving.",
    )


class Health(BaseModel):
    status: Literal["alive", "ready"]
    model_version: str | None = None


class FieldError(BaseModel):
    field: str = Field(description='Dotted path of the offending field, e.g. "listings.0.shipping".')
    type: str = Field(description='The rule that failed, e.g. "less_than_equal", "missing", "too_long".')
    msg: str
    loc: list[str | int]
    ctx: dict[str, str | int | float | bool] | None = None


class ValidationErrorBody(BaseModel):
    detail: list[FieldError]


#: The stable ``type`` of every error body except 422's (clients branch on it, not on ``detail``).
ErrorType = Literal[
    "model_not_ready",
    "prediction_failed",
    "internal_error",
    "unauthorized",
    "body_too_large",
    "invalid_content_length",
    "not_found",
    "method_not_allowed",
    "http_error",
    "explanation_unavailable",
]


class ErrorBody(BaseModel):
    """Every error but 422: a public message only; the details are in the server log under ``request_id``."""

    detail: str = Field(description="Short public message; never exception text, hosts or paths.")
    type: ErrorType = Field(description="Stable error code.")
    request_id: str = Field(
        description="Also in the X-Request-ID header; quote it to find the details in the logs."
    )


class NotReadyBody(ErrorBody):
    """``/health/ready`` without a model: why is in the server log (and on ``/v1/model``), not here."""

    status: Literal["not ready"] = "not ready"


class ModelUnavailableBody(ErrorBody):
    """``/v1/model`` without a model: the load error is shown to a caller who gave the API key."""

    load_error: str | None = Field(
        default=None,
        description="Why no model could be loaded; only when an API key is configured (null otherwise).",
    )
