"""Drift statistic and verdicts on synthetic windows against a training reference profile.

The reference is built by the training code itself (``reference_profile``) on synthetic listings,
with the listing's own price standing in for the model's prediction. Windows are other synthetic
listings: from the same generator (no drift), or with exactly one feature shifted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.monitoring.drift import (
    OTHER,
    WINDOW_COLUMNS,
    compute_drift,
    numeric_reference,
    psi,
)
from price_alchemy.params import MonitoringParams, Params, load_params
from price_alchemy.profile import bin_counts, histogram, quantile_edges, reference_profile, signals_frame

pytestmark = pytest.mark.unit

END = datetime(2025, 6, 1, 12, tzinfo=UTC)
START = END - timedelta(hours=24)
PARAMS = MonitoringParams()


def window_from_listings(listings: pd.DataFrame, predictions: np.ndarray) -> pd.DataFrame:
    """A window frame from canonical listings and their predicted prices, as the API would log them."""
    return signals_frame(listings).assign(price=np.asarray(predictions, dtype=np.float64))


def _predictions(listings: pd.DataFrame) -> np.ndarray:
    return np.clip(listings["price"].to_numpy(dtype=np.float64), 3.0, None)


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    train = generate_listings(6000, seed=1)
    return reference_profile(train, _predictions(train))


@pytest.fixture(scope="module")
def served() -> pd.DataFrame:
    """3,000 listings from the same generator (another seed, other ids), as the API would log them."""
    listings = generate_listings(3000, seed=2, start_id=10**7)
    return window_from_listings(listings, _predictions(listings))


def _drift(window: pd.DataFrame, profile: dict[str, Any], params: MonitoringParams = PARAMS, **kw: Any):
    return compute_drift(window, profile, params, window_start=START, window_end=END, **kw)


def test_psi_is_zero_for_equal_shares_and_matches_the_formula() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 1e-4) == 0.0
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.8) * math.log(0.5 / 0.8)
    assert psi([0.2, 0.8], [0.5, 0.5], 1e-4) == pytest.approx(expected)
    # An empty current bin costs a large but finite amount (the epsilon floor).
    assert psi([0.5, 0.5], [1.0, 0.0], 1e-4) == pytest.approx(
        0.5 * math.log(2) + 0.4999 * math.log(0.5 / 1e-4)
    )


def test_binning_rule_and_decile_edges() -> None:
    assert bin_counts([0, 1, 2, 3, 4, 5], [2, 4]).tolist() == [2, 2, 2]  # (-inf,2) [2,4) [4,inf)
    hist = histogram(np.arange(1000))
    assert len(hist["edges"]) == 9 and hist["shares"] == pytest.approx([0.1] * 10)
    assert quantile_edges([5, 5, 5, 5]) == [5.0]  # ties collapse: no empty reference bins


def test_profile_keeps_its_keys_and_adds_decile_histograms(profile: dict[str, Any]) -> None:
    assert {"item_condition_id", "shipping", "top_category", "brand_name", "prediction_quantiles"} <= set(
        profile
    )
    for key in ("name_length", "description_length", "prediction"):
        hist = profile["histograms"][key]
        assert len(hist["shares"]) == len(hist["edges"]) + 1
        assert sum(hist["shares"]) == pytest.approx(1.0)
        assert max(hist["shares"]) < 0.3, key  # decile edges: no bin holds most of the rows


def test_same_distribution_is_stable_on_every_feature(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    result = _drift(served, profile, model_version="3")

    assert result.status == "stable" and not result.drifted
    assert {f.feature for f in result.features} == set(WINDOW_COLUMNS)
    for f in result.features:
        assert f.value < PARAMS.psi.watch, (f.feature, f.value)
        assert f.listings == len(served) and sum(f.current) == pytest.approx(1.0, abs=1e-4)
    assert result.listings == 3000 and result.model_version == "3"


@pytest.mark.parametrize(
    ("feature", "shift"),
    [
        (
            "item_condition_id",
            lambda w, rng: w.assign(
                item_condition_id=np.where(rng.random(len(w)) < 0.7, 5, w["item_condition_id"])
            ),
        ),
        (
            "top_category",
            lambda w, rng: w.assign(
                top_category=np.where(rng.random(len(w)) < 0.5, "Electronics", w["top_category"])
            ),
        ),
        ("price", lambda w, rng: w.assign(price=w["price"] * 2.5)),
        ("description_length", lambda w, rng: w.assign(description_length=w["description_length"] // 3)),
    ],
)
def test_a_shifted_feature_drifts_and_only_that_one(
    served: pd.DataFrame, profile: dict[str, Any], feature: str, shift: Any
) -> None:
    window = shift(served.copy(), np.random.default_rng(0))

    result = _drift(window, profile)

    assert result.drifted and result.status == "drifted"
    assert result.drifted_features == [feature]
    assert result.feature(feature).value >= PARAMS.psi.drift
    assert all(f.value < PARAMS.psi.watch for f in result.features if f.feature != feature)


def test_unseen_levels_fall_into_the_other_bin(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    window = served.assign(brand_name="Brand never seen in training")

    result = _drift(window, profile)

    brand = result.feature("brand_name")
    assert brand.bins[-1] == OTHER and brand.current[-1] == pytest.approx(1.0)
    assert len(brand.bins) == PARAMS.top_k_brands + 1
    assert result.drifted_features == ["brand_name"]


def test_too_few_listings_is_insufficient_data_not_drift(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    few = served.head(PARAMS.min_listings - 1).assign(price=lambda w: w["price"] * 4)

    result = _drift(few, profile)

    assert result.status == "insufficient_data" and not result.drifted
    assert {f.status for f in result.features} == {"insufficient_data"}
    assert result.feature("price").value > PARAMS.psi.drift  # still computed and reported
    assert "INSUFFICIENT_DATA" in result.summary()


def test_predictions_of_other_model_versions_are_not_compared(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    window = served.assign(model_version="7")
    old = window.sample(frac=0.4, random_state=0).index
    window.loc[old, "model_version"] = "6"
    window.loc[old, "price"] = window.loc[old, "price"] * 5  # the old model priced very differently

    result = _drift(window, profile, model_version="7")

    assert not result.drifted
    assert result.feature("price").listings == len(window) - len(old)
    assert result.feature("item_condition_id").listings == len(window)
    assert result.model_versions_seen == {"7": len(window) - len(old), "6": len(old)}


def test_per_feature_thresholds_override_the_default(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    window = served.assign(price=served["price"] * 2.5)
    lenient = MonitoringParams.model_validate(
        {"feature_thresholds": {"price": {"watch": 5.0, "drift": 10.0}}}
    )

    result = _drift(window, profile, lenient)

    assert result.feature("price").threshold == 10.0 and result.feature("price").status == "stable"
    assert not result.drifted


def test_profiles_without_histograms_fall_back_to_their_quantiles(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    old_profile = {k: v for k, v in profile.items() if k != "histograms"}
    edges, shares = numeric_reference(old_profile, "prediction")
    assert edges == sorted(edges) and sum(shares) == pytest.approx(1.0)

    assert not _drift(served, old_profile).drifted
    shifted = _drift(served.assign(price=served["price"] * 2.5), old_profile)
    assert shifted.drifted_features == ["price"]


def test_window_frame_must_have_every_feature(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        _drift(served.drop(columns=["shipping"]), profile)


def test_monitoring_params_refuse_a_watch_level_above_the_drift_level() -> None:
    with pytest.raises(ValueError, match="watch threshold"):
        Params.model_validate({"monitoring": {"psi": {"watch": 0.3, "drift": 0.2}}})
    assert load_params().monitoring == MonitoringParams()  # the packaged file states the defaults


def test_every_monitoring_document_field_is_mapped(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    """The monitoring template is ``dynamic: false``: an unmapped field could not be charted."""
    from pathlib import Path

    from price_alchemy.monitoring.drift_job import monitoring_documents
    from price_alchemy.monitoring.templates import MONITORING_TEMPLATE, TEMPLATES, field_paths

    result = _drift(served.assign(price=served["price"] * 2.5), profile, model_version="3")
    index, docs = monitoring_documents(result, "price-alchemy", Path("/tmp/report.html"))

    mapped = field_paths(TEMPLATES[MONITORING_TEMPLATE]["template"]["mappings"])

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for key, value in node.items():
            out |= leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
        return out

    assert index == "price-alchemy-monitoring-2025.06" and len(docs) == len(WINDOW_COLUMNS) + 1
    for doc_id, doc in docs.items():
        assert leaves(doc) <= set(mapped), (doc_id, leaves(doc) - set(mapped))
    summary = docs[next(i for i in docs if i.endswith("-summary"))]
    assert summary["drift"]["drifted_features"] == ["price"] and summary["monitor"]["drifted"] is True
    assert summary["monitor"]["report_path"] == "/tmp/report.html"
