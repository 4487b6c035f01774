"""What travels with the model: one derivation of the listing signals for every side that uses them.

The request events (serving), the window the drift check reads, the training profile and the plots
must all derive a listing's signals the same way, or the drift PSI compares different things.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from price_alchemy.monitoring.drift import WINDOW_COLUMNS
from price_alchemy.names import MISSING
from price_alchemy.profile import (
    SIGNAL_COLUMNS,
    listing_signals,
    reference_profile,
    signals_frame,
    top_category,
)
from price_alchemy.serving.request_log import RequestContext, build_event

pytestmark = pytest.mark.unit

LISTINGS = [
    {
        "name": "Nike Air Max",
        "item_condition_id": 3,
        "category_name": "Men/Shoes/Athletic",
        "brand_name": "Nike",
        "shipping": 1,
        "item_description": "Worn twice",
    },
    {
        "name": "Bundle for Sarah",
        "item_condition_id": 1,
        "category_name": None,
        "brand_name": None,
        "shipping": 0,
        "item_description": None,
    },
    {
        "name": "x" * 30,
        "item_condition_id": 2,
        "category_name": "/odd/path",  # an empty first level is missing, not ""
        "brand_name": "",
        "shipping": 0,
        "item_description": "",
    },
    {
        "name": "long brand",
        "item_condition_id": 5,
        "category_name": "Women/Tops",
        "brand_name": "B" * 300,
        "shipping": 1,
        "item_description": "d" * 1234,
    },
]


def test_signals_of_one_listing() -> None:
    assert listing_signals(LISTINGS[0]) == {
        "item_condition_id": 3,
        "shipping": 1,
        "top_category": "Men",
        "brand_name": "Nike",
        "name_length": 12,
        "description_length": 10,
    }
    missing = listing_signals(LISTINGS[1])
    assert (missing["top_category"], missing["brand_name"], missing["description_length"]) == (
        MISSING,
        MISSING,
        0,
    )
    assert listing_signals(LISTINGS[2])["top_category"] == MISSING
    assert listing_signals(LISTINGS[2])["brand_name"] == MISSING
    assert listing_signals(LISTINGS[3])["brand_name"] == "B" * 100
    assert listing_signals(LISTINGS[3])["description_length"] == 1234


def test_a_frame_with_nan_gives_the_same_signals_as_the_api_rows() -> None:
    frame = pd.DataFrame(LISTINGS)  # pandas turns the Nones of text columns into None/NaN
    frame.loc[1, "brand_name"] = np.nan
    derived = signals_frame(frame)
    assert list(derived.columns) == list(SIGNAL_COLUMNS)
    assert derived.to_dict("records") == [listing_signals(row) for row in LISTINGS]
    assert top_category(frame["category_name"]).tolist() == ["Men", MISSING, MISSING, "Women"]


def test_request_events_carry_exactly_the_signals_the_drift_window_reads() -> None:
    assert (*SIGNAL_COLUMNS, "price") == WINDOW_COLUMNS
    ctx = RequestContext(
        batch_size=len(LISTINGS), listings=LISTINGS, prices=np.array([10.0, 20.0, 30.0, 40.0])
    )
    event = build_event(
        ctx, route="predict_batch", path="/v1/predict/batch", method="POST", status=200, duration_ns=1
    )
    logged = event["price_alchemy"]["listings"]
    for row, item in zip(LISTINGS, logged, strict=True):
        assert {c: item[c] for c in SIGNAL_COLUMNS} == listing_signals(row)


def test_the_training_profile_counts_the_same_signals() -> None:
    frame = pd.DataFrame(LISTINGS * 5)
    profile = reference_profile(frame, np.arange(len(frame), dtype=float) + 1)
    assert profile["rows"] == 20
    assert profile["top_category"] == {"Men": 0.25, MISSING: 0.5, "Women": 0.25}
    assert profile["brand_name"] == {MISSING: 0.5, "Nike": 0.25, "B" * 100: 0.25}
    assert profile["shipping"] == {"1": 0.5, "0": 0.5}
