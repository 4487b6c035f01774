"""The Listing contract: columns, dtypes and limits shared by readers, validation, features and the API."""

from __future__ import annotations

from typing import Final

# Canonical in-memory columns. Readers map Kaggle's ``train_id`` / ``test_id`` to ``listing_id``.
LISTING_ID: Final = "listing_id"
PRICE: Final = "price"
FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "name",
    "item_condition_id",
    "category_name",
    "brand_name",
    "shipping",
    "item_description",
)
TEXT_COLUMNS: Final[tuple[str, ...]] = ("name", "category_name", "brand_name", "item_description")
LISTING_COLUMNS: Final[tuple[str, ...]] = (LISTING_ID, *FEATURE_COLUMNS, PRICE)

# pandas dtypes of the canonical frame (nullable text is ``object`` with None/NaN for missing).
DTYPES: Final[dict[str, str]] = {
    LISTING_ID: "int64",
    "name": "object",
    "item_condition_id": "int64",
    "category_name": "object",
    "brand_name": "object",
    "shipping": "int64",
    "item_description": "object",
    PRICE: "float64",
}

# Kaggle file id columns and what they mean.
TRAIN_ID: Final = "train_id"
TEST_ID: Final = "test_id"
ID_COLUMNS: Final[tuple[str, ...]] = (TRAIN_ID, TEST_ID)

# Hard limits of a single listing (the API's pydantic model and the validation suite both use them).
CONDITIONS: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)
SHIPPING_VALUES: Final[tuple[int, ...]] = (0, 1)
NAME_MAX_LEN: Final = 255
CATEGORY_MAX_LEN: Final = 255
BRAND_MAX_LEN: Final = 100
DESCRIPTION_MAX_LEN: Final = 10_000
# Mercari listings use "a/b/c" (sometimes deeper, e.g. "Electronics/Cell Phones/Cases, Covers/..."):
# at least three non-empty levels separated by slashes.
CATEGORY_PATTERN: Final = r"^[^/]+(/[^/]+){2,}$"
NO_DESCRIPTION: Final = "No description yet"

# Warehouse tables.
LISTINGS_TABLE: Final = "listings"
QUARANTINE_TABLE: Final = "listings_quarantine"
QUARANTINE_COLUMNS: Final[tuple[str, ...]] = ("batch_id", "stage", "line", "listing_id", "reason", "raw")
