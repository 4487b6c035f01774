"""The 80% price range: calibrated on held-out rows, as wide as the listing is hard, stored as data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy.price_range import MAX_LOG_WIDTH, SCALE_CLIP, ListingScale, PriceInterval

pytestmark = pytest.mark.unit


def test_price_interval_round_trips_through_the_profile() -> None:
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(5, 200, 5000)
    y_true = np.expm1(np.log1p(y_pred) + rng.normal(0, 0.5, 5000))
    interval = PriceInterval.calibrate(y_true, y_pred, coverage=0.8)
    assert interval.rows == 5000
    assert interval.log_residual_low == pytest.approx(-0.5 * 1.2816, abs=0.04)
    assert interval.log_residual_high == pytest.approx(0.5 * 1.2816, abs=0.04)
    again = PriceInterval.from_profile({"price_interval": interval.to_profile()})
    assert again is not None
    assert (again.coverage, again.log_residual_low, again.log_residual_high) == (
        interval.coverage,
        interval.log_residual_low,
        interval.log_residual_high,
    )
    low, high = again.bounds(y_pred)
    inside = (y_true >= low) & (y_true <= high)
    assert inside.mean() == pytest.approx(0.8, abs=0.005)  # calibrated in-sample: within rounding of 80%


def _heteroscedastic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Listings whose price error depends on their segments: Electronics and unbranded listings are
    priced three and two times less precisely than the rest, as in real marketplaces."""
    rng = np.random.default_rng(seed)
    category = rng.choice(["Electronics/Phones/Cases", "Women/Tops/Blouse", "Beauty/Makeup/Lips"], n)
    brand = np.where(rng.random(n) < 0.3, None, "Acme")
    listings = pd.DataFrame(
        {
            "category_name": category,
            "brand_name": brand,
            "item_description": rng.choice(["Worn twice, no flaws", "No description yet"], n),
            "item_condition_id": rng.integers(1, 6, n),
            "shipping": rng.integers(0, 2, n),
        }
    )
    sigma = 0.2 * np.where(category == "Electronics/Phones/Cases", 3.0, 1.0) * np.where(brand, 1.0, 2.0)
    y_pred = rng.uniform(5, 200, n)
    y_true = np.expm1(np.log1p(y_pred) + rng.normal(0, sigma))
    return listings, y_true, y_pred


def _coverage_by(listings: pd.DataFrame, inside: np.ndarray) -> dict[str, float]:
    segments = {
        "electronics": listings["category_name"].str.startswith("Electronics").to_numpy(),
        "unbranded": listings["brand_name"].isna().to_numpy(),
    }
    segments["plain"] = ~segments["electronics"] & ~segments["unbranded"]
    return {name: float(inside[mask].mean()) for name, mask in segments.items()}


def test_the_adaptive_range_covers_every_segment_and_is_narrower_for_most_listings() -> None:
    calibration, y_cal, p_cal = _heteroscedastic(8_000, seed=1)
    held_out, y_true, y_pred = _heteroscedastic(30_000, seed=2)

    constant = PriceInterval.calibrate(y_cal, p_cal)
    adaptive = PriceInterval.calibrate(y_cal, p_cal, listings=calibration)
    assert constant.scale is None and adaptive.scale is not None
    assert adaptive.method == PriceInterval.METHOD_NORMALIZED

    coverage, ratio = {}, {}
    for name, interval in (("constant", constant), ("adaptive", adaptive)):
        low, high = interval.bounds(y_pred, held_out)
        inside = (y_true >= low) & (y_true <= high)
        coverage[name] = {"all": float(inside.mean()), **_coverage_by(held_out, inside)}
        ratio[name] = float(np.median(np.exp(np.log1p(high) - np.log1p(low))))
    # One width for all: too wide for the easy listings, too narrow for the hard ones ...
    assert coverage["constant"]["plain"] > 0.9 and coverage["constant"]["electronics"] < 0.7
    # ... a width per listing: 80% overall and within each segment, and narrower for most listings.
    for segment, share in coverage["adaptive"].items():
        assert share == pytest.approx(0.8, abs=0.025), (segment, coverage["adaptive"])
    assert ratio["adaptive"] < 0.95 * ratio["constant"]


def test_the_adaptive_range_round_trips_and_needs_the_listings() -> None:
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=3)
    interval = PriceInterval.calibrate(y_true, y_pred, listings=listings)
    again = PriceInterval.from_profile({"price_interval": interval.to_profile()})
    assert again == interval
    np.testing.assert_allclose(again.bounds(y_pred, listings), interval.bounds(y_pred, listings))
    with pytest.raises(ValueError, match="one listing per price"):
        interval.bounds(y_pred)
    with pytest.raises(ValueError, match="one listing per price"):
        interval.bounds(y_pred, listings.head(10))


def test_too_few_held_out_rows_calibrate_the_constant_range() -> None:
    listings, y_true, y_pred = _heteroscedastic(399, seed=4)
    assert PriceInterval.calibrate(y_true, y_pred, listings=listings).scale is None
    assert PriceInterval.calibrate(y_true, y_pred, listings=listings, min_rows=100).scale is not None


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(weights=s["weights"][:-1]),
        lambda s: s.update(intercept="nan"),
        lambda s: s.update(centre="not a list"),
        lambda s: s.pop("price_edges"),
        lambda s: s.update(intercept=10**400),  # beyond float: OverflowError, not a crash
        lambda s: s.update(intercept=50.0),  # finite, but every range would end at infinity
        lambda s: s.update(intercept=True),
        lambda s: s.update(centre=[1e308 * (-1) ** i for i in range(len(s["centre"]))]),
        lambda s: s.update(weights=[1e308] * len(s["weights"])),
        lambda s: s.update(price_edges="0123"),  # iterable, but not a list of numbers
        lambda s: s.update(categories={c: 1 for c in s["categories"]}),
        lambda s: s.update(categories=[*s["categories"][:-1], s["categories"][0]]),
        lambda s: s.update(price_edges=s["price_edges"][::-1]),
    ],
    ids=[
        "weights-short",
        "intercept-nan",
        "centre-not-numbers",
        "edges-missing",
        "intercept-huge-int",
        "intercept-absurd",
        "intercept-bool",
        "centre-huge",
        "weights-huge",
        "edges-string",
        "categories-dict",
        "categories-repeated",
        "edges-unsorted",
    ],
)
def test_a_damaged_scale_gives_no_range_rather_than_a_wrong_one(damage: Any) -> None:
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=5)
    stored = PriceInterval.calibrate(y_true, y_pred, listings=listings).to_profile()
    damage(stored["scale"])
    assert PriceInterval.from_profile({"price_interval": stored}) is None


def test_missing_and_junk_listing_fields_get_a_finite_scale() -> None:
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=6)
    interval = PriceInterval.calibrate(y_true, y_pred, listings=listings)
    odd = pd.DataFrame(
        {
            "category_name": [None, "", "Brand New/Top"],
            "brand_name": [None, float("nan"), "x" * 500],
            "item_description": [None, float("nan"), "fine"],
            "item_condition_id": [None, "junk", 9],
            "shipping": [None, 3, 1],
        }
    )
    low, high = interval.bounds(np.array([10.0, 20.0, 30.0]), odd)
    assert np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()


def test_a_listing_scale_stays_within_its_clip_of_the_typical_listing() -> None:
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=7)
    fitted = ListingScale.fit(listings, y_pred, np.log1p(y_true) - np.log1p(y_pred))
    wild = ListingScale(
        fitted.price_edges,
        fitted.categories,
        fitted.centre,
        tuple(50.0 * (-1) ** i for i in range(len(fitted.weights))),
        fitted.intercept,
    )
    scale = wild.of(listings, y_pred) / np.exp(fitted.intercept)
    assert scale.min() == pytest.approx(SCALE_CLIP[0]) and scale.max() == pytest.approx(SCALE_CLIP[1])


@pytest.mark.parametrize(
    "field, value",
    [("log_residual_high", 10**400), ("log_residual_high", 1e300), ("coverage", True), ("coverage", "0.8")],
)
def test_an_absurd_constant_range_gives_no_range(field: str, value: Any) -> None:
    _, y_true, y_pred = _heteroscedastic(500, seed=8)
    stored = PriceInterval.calibrate(y_true, y_pred).to_profile()
    stored[field] = value
    assert PriceInterval.from_profile({"price_interval": stored}) is None


def test_every_range_a_stored_profile_can_give_is_finite() -> None:
    """The largest intercept and quantiles that pass the checks still give finite ends."""
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=9)
    stored = PriceInterval.calibrate(y_true, y_pred, listings=listings).to_profile()
    stored["scale"]["intercept"] = 1.0
    edge = MAX_LOG_WIDTH / (np.e * SCALE_CLIP[1])
    stored["log_residual_low"], stored["log_residual_high"] = -edge, edge
    interval = PriceInterval.from_profile({"price_interval": stored})
    assert interval is not None
    low, high = interval.bounds(np.array([1.0, 2000.0, 1e6]), listings.head(3))
    assert np.isfinite(low).all() and np.isfinite(high).all()
    stored["log_residual_high"] = edge * 1.01
    assert PriceInterval.from_profile({"price_interval": stored}) is None


def test_categorical_and_string_columns_give_the_same_range() -> None:
    listings, y_true, y_pred = _heteroscedastic(1_000, seed=10)
    interval = PriceInterval.calibrate(y_true, y_pred, listings=listings)
    typed = listings.astype(
        {"brand_name": "category", "item_description": "category", "category_name": "category"}
    ).astype({"item_condition_id": str, "shipping": str})
    np.testing.assert_allclose(interval.bounds(y_pred, typed), interval.bounds(y_pred, listings))
