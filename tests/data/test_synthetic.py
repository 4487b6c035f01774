"""The synthetic generator against the committed profile of the real Mercari sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.data.synthetic import generate_listings, listing_profile

pytestmark = pytest.mark.data

PROFILE_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "real_sample_profile.json"


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return json.loads(PROFILE_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return generate_listings(20_000, seed=0)


@pytest.fixture(scope="module")
def profile(synthetic: pd.DataFrame) -> dict[str, Any]:
    return listing_profile(synthetic)


def test_columns_and_dtypes_match_real_and_schema(profile: dict[str, Any], real: dict[str, Any]) -> None:
    assert profile["columns"] == real["columns"] == list(schema.LISTING_COLUMNS)
    assert profile["dtypes"] == real["dtypes"] == schema.DTYPES


@pytest.mark.parametrize("column", ["brand_name", "category_name", "item_description", "name"])
def test_missing_rates_close_to_real(profile: dict[str, Any], real: dict[str, Any], column: str) -> None:
    assert abs(profile["missing_rate"][column] - real["missing_rate"][column]) < 0.03


def test_price_quantiles_within_a_factor(profile: dict[str, Any], real: dict[str, Any]) -> None:
    for q, value in real["price_quantiles"].items():
        assert value / 1.35 <= profile["price_quantiles"][q] <= value * 1.35, q
    assert real["price_mean"] / 1.3 <= profile["price_mean"] <= real["price_mean"] * 1.3
    assert 500 <= profile["price_max"] <= 2000


def test_mixes_close_to_real(profile: dict[str, Any], real: dict[str, Any]) -> None:
    for condition, share in real["condition_mix"].items():
        assert abs(profile["condition_mix"][condition] - share) < 0.03, condition
    assert abs(profile["shipping_rate"] - real["shipping_rate"]) < 0.05
    assert abs(profile["no_description_rate"] - real["no_description_rate"]) < 0.02
    assert 0.0005 <= profile["zero_price_rate"] <= 0.003


def test_zero_prices_in_every_thousand_ids_and_whole_dollars() -> None:
    df = generate_listings(2_000, seed=9, start_id=123)
    assert (df["price"] == 0).sum() == 2
    assert (df["price"] == df["price"].round()).all()
    assert df.loc[df["price"] > 0, "price"].min() >= 3


def test_deterministic_for_a_seed() -> None:
    pd.testing.assert_frame_equal(generate_listings(500, seed=11), generate_listings(500, seed=11))
    other = generate_listings(500, seed=12)
    assert not generate_listings(500, seed=11)["name"].equals(other["name"])


def test_ids_unique_from_start_id() -> None:
    df = generate_listings(250_001, seed=1, start_id=1_000)  # crosses generation blocks
    assert df[schema.LISTING_ID].iloc[0] == 1_000
    assert df[schema.LISTING_ID].is_unique
    assert df[schema.LISTING_ID].iloc[-1] == 251_000
    assert df[schema.LISTING_ID].is_monotonic_increasing


def test_categories_have_three_levels(synthetic: pd.DataFrame) -> None:
    categories = synthetic["category_name"].dropna()
    assert categories.str.fullmatch(schema.CATEGORY_PATTERN).all()
    assert (categories.str.count("/") == 2).all()
    tops = set(categories.str.split("/").str[0])
    assert {"Women", "Men", "Beauty", "Kids", "Electronics", "Home", "Vintage & Collectibles"} <= tops
    assert categories.str.split("/").str[0].value_counts(normalize=True)["Women"] > 0.35


def test_unlabelled_frame_has_no_price() -> None:
    df = generate_listings(100, seed=2, with_price=False)
    assert df["price"].isna().all()
    assert str(df["price"].dtype) == "float64"


def test_price_carries_learnable_signal(synthetic: pd.DataFrame) -> None:
    """Words, brands and categories move the price the way the generator promises."""
    log_price = np.log1p(synthetic["price"])
    name = synthetic["name"].fillna("")
    desc = synthetic["item_description"].fillna("")
    assert log_price[desc.str.contains("for parts")].median() < log_price.median() - 0.3
    assert log_price[name.str.contains("14k Gold")].median() > log_price.median() + 0.3
    assert log_price[synthetic["brand_name"] == "Louis Vuitton"].median() > log_price.median() + 1.0
    phones = synthetic["category_name"] == "Electronics/Cell Phones & Accessories/Cell Phones & Smartphones"
    assert log_price[phones].median() > log_price.median() + 0.8
    shipping = synthetic.groupby("shipping")["price"].median()
    assert shipping[1] < shipping[0]


@pytest.mark.slow
def test_ridge_on_text_learns_real_but_not_perfect_signal() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    df = generate_listings(6_000, seed=21)
    df = df[df["price"] > 0]
    text = df["name"] + " " + df["brand_name"].fillna("") + " " + df["category_name"].fillna("") + " "
    text = text + df["item_description"] + " cond" + df["item_condition_id"].astype(str)
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit_transform(text)
    y = np.log1p(df["price"].to_numpy())
    model = Ridge(alpha=2.0).fit(x[:5000], y[:5000])
    r2 = r2_score(y[5000:], model.predict(x[5000:]))
    assert 0.3 < r2 < 0.7
