"""Names that cross a process or system boundary, defined once and imported everywhere else.

A registry alias, an artifact path or an index name is written by one component and read by
another (training writes ``reference/profile.json``, the API and the drift monitor read it; the API
writes request events, the shipper indexes them, Kibana and the drift monitor query them). Each
such name lives here so the two sides cannot drift apart. No imports beyond the standard library:
``config`` and every layer may import this module.
"""

from __future__ import annotations

from typing import Final

# --- MLflow registry aliases ---------------------------------------------------------------
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"

# --- artifacts logged to a training run (read back by serving, monitoring and later stages) ----
PROFILE_ARTIFACT: Final = "reference/profile.json"
"""The training profile (drift reference) and the price interval, in one JSON document."""
SEARCH_OUTCOME_ARTIFACT: Final = "search/outcome.json"
"""What the hyperparameter search chose; the fit stage of a separate process reads it back."""
PROMOTION_ARTIFACT: Final = "promotion.json"
REFERENCE_LISTINGS: Final = "reference_listings"
"""Key of the training profile holding the reference listings (display fields) the API shows as similar."""
MODEL_ARTIFACT: Final = "model"
MONITORING_EXPERIMENT_SUFFIX: Final = "-monitoring"
PROMOTION_LOCK_SUFFIX: Final = ".promotion-lock"
"""A registered model ``<model><suffix>`` exists exactly while one process decides a promotion."""
SELECTION_ARTIFACT: Final = "data/selection.parquet"
"""The (batch_id, listing_id) rows a query selected, pinned by the first training task."""
MODEL_DIGEST_TAG: Final = "price_alchemy.model_digest"
"""Version tag: SHA-256 of the serialized model file, recorded at registration, checked at load."""
PROFILE_DIGEST_TAG: Final = "price_alchemy.profile_digest"
"""Version tag: SHA-256 of the run's training profile (it holds the price interval the API applies)."""
TEST_RMSLE_TAG: Final = "test_rmsle"
RUN_ID_TAG: Final = "run_id"

# --- Elasticsearch indices -----------------------------------------------------------------
REQUESTS_INDEX_PREFIX: Final = "price-alchemy-requests"
"""Daily request-event indices are ``<prefix>-YYYY.MM.DD``."""
REQUESTS_INDEX_PATTERN: Final = f"{REQUESTS_INDEX_PREFIX}*"
MONITORING_INDEX_PREFIX: Final = "price-alchemy-monitoring"
"""Monthly drift-result indices are ``<prefix>-YYYY.MM``."""
MONITORING_INDEX_PATTERN: Final = f"{MONITORING_INDEX_PREFIX}*"

# --- batch scoring: the warehouse table and the Airflow names around it -----------------------
PREDICTIONS_TABLE: Final = "predictions"
"""Warehouse table of batch prices: one row per listing, batch and model version."""
BATCH_SCORING_DAG: Final = "price_alchemy_batch_scoring"
LISTINGS_ASSET: Final = "price_alchemy/warehouse/listings"
"""Updated by the ingest DAG when a validated batch lands (training and scoring are scheduled on it)."""
CHAMPION_ASSET: Final = "price_alchemy/registry/champion"
"""Updated by the training DAG's promote task when a new champion is promoted (scoring re-prices)."""
CHAMPION_ALIAS_EVENTS: Final = "price_alchemy/registry/promotions"
"""The asset alias the promote task declares, so that it emits CHAMPION_ASSET only when it promotes."""

# --- the value that stands for an absent categorical field ---------------------------------
MISSING: Final = "(missing)"


def requests_index(day: str) -> str:
    """The request-event index of a UTC day given as ``YYYY.MM.DD``."""
    return f"{REQUESTS_INDEX_PREFIX}-{day}"


def monitoring_index(month: str) -> str:
    """The drift-result index of a month given as ``YYYY.MM``."""
    return f"{MONITORING_INDEX_PREFIX}-{month}"
