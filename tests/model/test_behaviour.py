"""Behavioural tests of the trained pipeline: invariance, direction and minimum functionality.

One model per module, searched and fitted with the production code path (``fit_tuned_model``,
ridge + LightGBM, blended when the validation split says so) on 3,000 synthetic listings with a
tiny budget. The synthetic generator builds prices from known effects (condition, brand, words),
so the expected directions are facts about the data, not guesses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.config import Settings
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.mlflow_store import configure as configure_mlflow
from price_alchemy.params import Params
from price_alchemy.split import split_listings
from price_alchemy.training.search import FittedModel, fit_tuned_model
from price_alchemy.training.stages import usable_for_training

pytestmark = pytest.mark.model

FEATURES = list(schema.FEATURE_COLUMNS)
TRAIN_ROWS = 3000


@pytest.fixture(scope="module")
def fitted(
    tmp_path_factory: pytest.TempPathFactory,
    settings_factory: Callable[[Path], Settings],
    params: Params,
    mlflow_reset: Callable[[], None],
) -> Iterator[FittedModel]:
    """The model, with its trial runs logged to a throw-away store under a parent run."""
    # a generous timeout: the trial count must come from max_evals, not from how busy the machine is
    tuning = params.tuning.model_copy(
        update={"families": ("ridge", "lightgbm"), "max_evals": 4, "timeout_s": 900.0}
    )
    both = params.model_copy(update={"tuning": tuning})
    split = split_listings(usable_for_training(generate_listings(TRAIN_ROWS, seed=21)), both.split)
    configure_mlflow(settings_factory(tmp_path_factory.mktemp("behaviour") / "home"))
    try:
        with mlflow.start_run(run_name="behaviour"):
            yield fit_tuned_model(split.train, split.valid, both)
    finally:
        mlflow_reset()


@pytest.fixture(scope="module")
def model(fitted: FittedModel) -> Any:
    return fitted.pipeline


@pytest.fixture(scope="module")
def probe() -> pd.DataFrame:
    """Unseen listings (ids far from the training ids) to perturb."""
    return generate_listings(400, seed=99, start_id=10**7)


def _log_price(model: Any, frame: pd.DataFrame) -> np.ndarray:
    prices = model.predict(frame[FEATURES])
    assert np.all(np.isfinite(prices)) and np.all(prices > 0)
    return np.log(prices)


def test_the_search_covered_both_families(fitted: FittedModel) -> None:
    assert fitted.tuning.trials and len(fitted.tuning.trials) == 4
    assert set(fitted.outcome.valid_rmsle) == {"ridge", "lightgbm"}
    assert sum(fitted.outcome.weights.values()) == pytest.approx(1.0)
    assert all(0.3 < score < 0.8 for score in fitted.outcome.valid_rmsle.values())


# -- invariance ---------------------------------------------------------------------------------


def test_listing_id_and_a_stale_price_do_not_change_the_prediction(model: Any, probe: pd.DataFrame) -> None:
    """Neither the id nor a price column (present in train-format files) may leak into the model."""
    base = model.predict(probe[FEATURES])
    shuffled_ids = probe.assign(listing_id=probe["listing_id"].to_numpy()[::-1] + 12345)
    wrong_prices = probe.assign(price=9999.0)

    np.testing.assert_array_equal(model.predict(shuffled_ids[FEATURES]), base)
    np.testing.assert_array_equal(model.predict(wrong_prices), base)
    np.testing.assert_array_equal(model.predict(shuffled_ids), base)


def test_reordering_description_sentences_barely_changes_the_prediction(
    model: Any, probe: pd.DataFrame
) -> None:
    def reorder(text: str) -> str:
        return " ".join(reversed(text.split(". ")))

    reordered = probe.assign(item_description=probe["item_description"].map(reorder))
    assert (reordered["item_description"] != probe["item_description"]).mean() > 0.5  # really changed

    change = np.abs(_log_price(model, reordered) - _log_price(model, probe))

    assert np.median(change) < 0.05
    assert np.quantile(change, 0.95) < 0.12


def test_row_order_and_batch_size_do_not_change_a_prediction(model: Any, probe: pd.DataFrame) -> None:
    whole = model.predict(probe[FEATURES])
    reversed_rows = model.predict(probe[FEATURES].iloc[::-1])[::-1]
    one_by_one = np.array([model.predict(probe[FEATURES].iloc[[i]])[0] for i in range(10)])

    np.testing.assert_allclose(reversed_rows, whole)
    np.testing.assert_allclose(one_by_one, whole[:10])


# -- direction ----------------------------------------------------------------------------------


def test_worse_condition_gives_a_lower_price(model: Any, probe: pd.DataFrame) -> None:
    new_with_tags = _log_price(model, probe.assign(item_condition_id=1))
    worn = _log_price(model, probe.assign(item_condition_id=5))
    used = _log_price(model, probe.assign(item_condition_id=3))

    # Synthetic effect of condition 5 vs 1: -0.32 in log price; the model must see most of it.
    assert worn.mean() < new_with_tags.mean() - 0.05
    assert used.mean() < new_with_tags.mean() - 0.03
    assert (worn < new_with_tags).mean() > 0.9


def test_a_premium_brand_is_priced_above_no_brand(model: Any, probe: pd.DataFrame) -> None:
    unbranded = probe[probe["brand_name"].isna()]
    assert len(unbranded) > 100

    none = _log_price(model, unbranded)
    coach = _log_price(model, unbranded.assign(brand_name="Coach"))
    budget_brand = _log_price(model, unbranded.assign(brand_name="Forever 21"))

    assert coach.mean() > none.mean() + 0.2
    assert (coach > none).mean() > 0.9
    assert budget_brand.mean() < coach.mean() - 0.3


def test_price_words_push_the_price_the_right_way(model: Any, probe: pd.DataFrame) -> None:
    base = _log_price(model, probe)
    broken = _log_price(model, probe.assign(name=probe["name"] + " For Parts"))
    bundle = _log_price(model, probe.assign(name=probe["name"] + " Bundle"))

    assert broken.mean() < base.mean() - 0.05
    assert bundle.mean() > base.mean() + 0.05


# -- minimum functionality ----------------------------------------------------------------------


def _one(**changes: Any) -> pd.DataFrame:
    row = {
        "name": "Michael Kors Black Shoulder Bag",
        "item_condition_id": 2,
        "category_name": "Women/Women's Handbags/Shoulder Bag",
        "brand_name": "Michael Kors",
        "shipping": 0,
        "item_description": "Like new, worn once. Smoke free home.",
    }
    row.update(changes)
    return pd.DataFrame([row], columns=FEATURES)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="typical"),
        pytest.param({"brand_name": None}, id="missing-brand"),
        pytest.param({"category_name": None}, id="missing-category"),
        pytest.param({"item_description": None}, id="missing-description"),
        pytest.param({"item_description": schema.NO_DESCRIPTION}, id="no-description-yet"),
        pytest.param(
            {"brand_name": np.nan, "category_name": np.nan, "item_description": np.nan}, id="all-nan"
        ),
        pytest.param({"brand_name": "Zyxwv Unheard Of"}, id="unseen-brand"),
        pytest.param({"category_name": "Garden/Power Tools/Chainsaws"}, id="unseen-category"),
        pytest.param(
            {"category_name": "Electronics/Cell Phones & Accessories/Cases/Deep/Path"}, id="deep-category"
        ),
        pytest.param({"name": "x"}, id="one-letter-name"),
        pytest.param({"item_description": "great " * 1666 + "bag"}, id="longest-description"),
        pytest.param({"name": "Ünïcödé ✨ 包包 €99"}, id="unicode"),
        pytest.param({"item_condition_id": 5, "shipping": 1}, id="other-ints"),
    ],
)
def test_a_single_listing_gets_a_finite_positive_price(model: Any, changes: dict[str, Any]) -> None:
    row = _one(**changes)
    assert len(str(row["item_description"].iloc[0])) <= schema.DESCRIPTION_MAX_LEN

    price = model.predict(row)

    assert price.shape == (1,)
    assert np.isfinite(price[0]) and 1.0 < price[0] < 2000.0


def test_predictions_stay_in_the_range_of_the_training_prices(model: Any, probe: pd.DataFrame) -> None:
    prices = model.predict(probe[FEATURES])

    assert prices.min() >= 1.0 and prices.max() <= 2000.0
    assert 8.0 < np.median(prices) < 30.0  # synthetic median price is 13
    assert np.corrcoef(np.log(prices), np.log1p(probe["price"]))[0, 1] > 0.4
