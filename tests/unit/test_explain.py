"""Explanations are the model's own arithmetic: effects + baseline add up to its log-price, and a
training listing's most similar listing is itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy.estimators import WeightedBlend
from price_alchemy.explain import NO_REFERENCES, Explainer, _linear
from price_alchemy.features import (
    LEADING_COLUMNS,
    MEANING_BLOCKS,
    build_featurizer,
    build_pipeline,
    text_start,
)
from price_alchemy.params import Params
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.similar import FIELD_CUTS, SimilarIndex, _knn_rows, reference_listings
from price_alchemy.training.families import make_estimator
from price_alchemy.word_vectors import DIMS

pytestmark = pytest.mark.unit

CONFIGS: dict[str, dict[str, Any]] = {
    "ridge": {"family": "ridge", "alpha": 3.0},
    "lightgbm": {
        "family": "lightgbm",
        "learning_rate": 0.1,
        "num_leaves": 8,
        "n_estimators": 40,
        "min_child_samples": 20,
        "colsample_bytree": 0.8,
        "max_columns": 2000,
    },
    "stack": {
        "family": "stack",
        "alpha": 6.0,
        "n_neighbors": 10,
        "learning_rate": 0.05,
        "n_estimators": 60,
        "num_leaves": 8,
        "min_child_samples": 20,
        "svd_components": 10,
        "n_folds": 3,
        "max_meta_rows": 50_000,
        "knn_max_reference": 800,  # fewer than the rows: the kNN samples its references
        "knn_max_df": 0.05,  # ... and leaves out its common columns, as the packaged stack does
    },
}


@pytest.fixture(scope="module")
def fit_rows(synthetic_listings: pd.DataFrame) -> pd.DataFrame:
    return synthetic_listings.head(1200).reset_index(drop=True)


@pytest.fixture(scope="module")
def models(params: Params, fit_rows: pd.DataFrame) -> dict[str, Any]:
    X, y = fit_rows[list(FEATURE_COLUMNS)], fit_rows[PRICE].to_numpy(dtype=np.float64)
    out = {}
    for name, config in CONFIGS.items():
        out[name] = build_pipeline(build_featurizer(params.features), make_estimator(config)).fit(X, y)
    blend = WeightedBlend([(n, make_estimator(CONFIGS[n])) for n in ("ridge", "lightgbm")], [0.7, 0.3])
    out["blend"] = build_pipeline(build_featurizer(params.features), blend).fit(X, y)
    return out


@pytest.fixture(scope="module")
def queries(synthetic_listings: pd.DataFrame) -> pd.DataFrame:
    return synthetic_listings.tail(40)[list(FEATURE_COLUMNS)].reset_index(drop=True)


def _log_prediction(pipeline: Any, X: Any) -> np.ndarray:
    return np.asarray(pipeline.named_steps["model"].estimator_.predict(X), dtype=np.float64)


@pytest.mark.parametrize("family", ["ridge", "stack"])
def test_the_linear_part_adds_up_exactly(models: dict[str, Any], queries: pd.DataFrame, family: str) -> None:
    pipeline = models[family]
    explainer = Explainer(pipeline)
    cleaned, X = explainer.featurize(queries)
    rows = explainer.labels(queries, cleaned, X)
    estimator = pipeline.named_steps["model"].estimator_
    linear = estimator if family == "ridge" else estimator.base_
    (_, codes), (_, ridge) = linear.steps
    found = _linear(codes, ridge, codes.transform(X), explainer.layout, rows)
    totals = np.array([a.total for a in found])
    np.testing.assert_allclose(totals, np.asarray(linear.predict(X), dtype=np.float64), rtol=0, atol=2e-6)
    assert all(a.baseline == pytest.approx(float(ridge.intercept_)) for a in found)
    # Effects are the listing's own: its condition and shipping, worded for a reader.
    labels = set(found[0].effects)
    condition, shipping = int(queries.loc[0, "item_condition_id"]), int(queries.loc[0, "shipping"])
    assert f"condition: {condition}" in labels
    assert f"shipping: paid by {'seller' if shipping == 1 else 'buyer'}" in labels
    assert not {f"condition: {c}" for c in range(1, 6) if c != condition} & labels
    # The word-vector blocks are one effect each: coefficients x the listing's vector, all columns.
    title = "name, brand and category: what the words mean"
    start = explainer.layout.meaning[0][0].start
    at = start - codes.n_codes  # the encoder puts the columns after the codes first
    coef = np.asarray(ridge.coef_, dtype=np.float64)[at : at + DIMS]
    vector = X[0, start : start + DIMS].toarray()[0]
    assert found[0].effects[title] == pytest.approx(float(coef @ vector), abs=1e-6)
    assert found[0].effects[title] != 0


@pytest.mark.parametrize("family", ["ridge", "lightgbm", "stack", "blend"])
def test_baseline_and_effects_add_up_to_the_prediction(
    models: dict[str, Any], queries: pd.DataFrame, family: str
) -> None:
    pipeline = models[family]
    X, found = Explainer(pipeline).attributions(queries)
    np.testing.assert_allclose([a.total for a in found], _log_prediction(pipeline, X), rtol=0, atol=1e-4)
    served = pipeline.predict(queries)
    np.testing.assert_allclose(np.expm1(np.clip([a.total for a in found], 0, None)), served, rtol=1e-4)


@pytest.mark.parametrize("family", ["ridge", "stack", "blend"])
def test_prices_from_the_shared_featurization_are_the_pipeline_s(
    models: dict[str, Any], queries: pd.DataFrame, family: str
) -> None:
    """The API prices a batch and explains some of its rows from one featurization."""
    explainer = Explainer(models[family])
    prices, found = explainer.price_and_explain(queries, [3, 0])
    np.testing.assert_array_equal(prices, models[family].predict(queries))
    alone = explainer.explain(queries.iloc[[3, 0]])
    assert [(e.log_price, e.up, e.down) for e in found] == [(e.log_price, e.up, e.down) for e in alone]


def test_a_listing_s_own_shipping_moves_its_effect(models: dict[str, Any], queries: pd.DataFrame) -> None:
    """The same listing paid by the buyer, then by the seller: the effect is relabelled and changes."""
    rows = pd.concat([queries.head(1)] * 2, ignore_index=True)
    rows["shipping"] = [0, 1]
    _, (buyer, seller) = Explainer(models["ridge"]).attributions(rows)
    assert "shipping: paid by buyer" in buyer.effects and "shipping: paid by buyer" not in seller.effects
    assert buyer.effects["shipping: paid by buyer"] != pytest.approx(
        seller.effects["shipping: paid by seller"]
    )


def test_top_factors_are_sorted_signed_and_the_rest_adds_up(
    models: dict[str, Any], queries: pd.DataFrame
) -> None:
    for found in Explainer(models["stack"]).explain(queries):
        up, down = [v for _, v in found.up], [v for _, v in found.down]
        assert 0 < len(up) <= 5 and 0 < len(down) <= 5
        assert all(v > 0 for v in up) and up == sorted(up, reverse=True)
        assert all(v < 0 for v in down) and down == sorted(down)
        assert found.baseline + sum(up) + sum(down) + found.others == pytest.approx(found.log_price, abs=1e-9)
        assert found.similar is None and found.similar_unavailable == NO_REFERENCES


@pytest.mark.parametrize("family", ["stack", "ridge"])
def test_a_training_listing_s_nearest_neighbour_is_itself(
    models: dict[str, Any], fit_rows: pd.DataFrame, family: str
) -> None:
    pipeline = models[family]
    section = reference_listings(pipeline, fit_rows)
    assert section["source"] == ("knn" if family == "stack" else "text")
    explainer = Explainer(pipeline, section)
    assert explainer.similar_unavailable is None
    estimator = pipeline.named_steps["model"].estimator_
    kept = _knn_rows(estimator, len(fit_rows)) if family == "stack" else np.arange(len(section["rows"]))
    picks = [int(i) for i in kept[::131]][:6]
    assert len(picks) >= 5
    found = explainer.explain(fit_rows.loc[picks, list(FEATURE_COLUMNS)].reset_index(drop=True))
    for i, explanation in zip(picks, found, strict=True):
        assert explanation.similar is not None and len(explanation.similar) == 5
        first = explanation.similar[0]
        assert first["similarity"] == pytest.approx(1.0, abs=1e-3)
        assert (first["name"], first["price"]) == (fit_rows.loc[i, "name"], fit_rows.loc[i, PRICE])
        sims = [s["similarity"] for s in explanation.similar]
        assert sims == sorted(sims, reverse=True) and sims[-1] < 1.0
        assert set(first) == {
            "name",
            "brand_name",
            "category_name",
            "item_condition_id",
            "price",
            "similarity",
        }


def test_a_stack_s_references_are_its_knn_rows(models: dict[str, Any], fit_rows: pd.DataFrame) -> None:
    stack = models["stack"].named_steps["model"].estimator_
    section = reference_listings(models["stack"], fit_rows)
    assert len(section["rows"]) == stack.knn_reference_.shape[0] == 800
    prices = np.log1p([r["price"] for r in section["rows"]])
    np.testing.assert_allclose(prices, stack.knn_targets_, atol=1e-6)
    # Rows the model was not fitted on (here: shuffled) are not passed off as its kNN rows.
    shuffled = fit_rows.sample(frac=1.0, random_state=1)
    assert reference_listings(models["stack"], shuffled)["source"] == "text"


def test_reference_listings_are_bounded(models: dict[str, Any], fit_rows: pd.DataFrame) -> None:
    long = fit_rows.head(50).copy()
    long["name"] = "n" * 500
    long["brand_name"] = "b" * 500
    long["item_description"] = "d " * 2000
    section = reference_listings(models["ridge"], long)
    row = section["rows"][0]
    assert len(row["name"]) == FIELD_CUTS["name"] and len(row["brand_name"]) == FIELD_CUTS["brand_name"]
    assert len(row["item_description"]) == 200
    assert len(section["rows"]) == 50


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"source": "knn", "rows": [{"name": "x", "item_condition_id": 1, "price": 3.0}]}, "no stack"),
        ({"source": "sql", "rows": []}, "unknown reference listings source 'sql'"),
        ({"source": "text", "rows": [{"name": "x"}]}, "lacks a valid field"),
        ([1, 2], "not a mapping"),
    ],
)
def test_unusable_references_are_named(models: dict[str, Any], section: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        SimilarIndex.build(models["ridge"], section)
    explainer = Explainer(models["ridge"], section)
    assert explainer.index is None and reason in str(explainer.similar_unavailable)


@pytest.mark.parametrize("family", ["ridge", "stack"])
def test_a_model_saved_before_the_word_vectors_still_explains(
    params: Params, fit_rows: pd.DataFrame, family: str
) -> None:
    """Its featurizer has no word-vector blocks (the TF-IDF right after the numeric columns) and its
    stack no ``n_dense``: it prices, explains and finds a training listing itself as before."""
    featurizer = build_featurizer(params.features)
    columns = featurizer.named_steps["vectorize"]
    columns.transformers = [t for t in columns.transformers if t[0] not in MEANING_BLOCKS]
    estimator = make_estimator({**CONFIGS[family], "knn_max_reference": 5000})
    if family == "stack":
        estimator.set_params(n_dense=0)
    pipeline = build_pipeline(featurizer, estimator)
    pipeline.fit(fit_rows[list(FEATURE_COLUMNS)], fit_rows[PRICE].to_numpy(dtype=np.float64))
    assert text_start(featurizer) == LEADING_COLUMNS
    estimator = pipeline.named_steps["model"].estimator_
    if family == "stack":  # as an earlier version saved it: no attribute, the class default (0)
        del estimator.n_dense
        assert estimator.get_params()["n_dense"] == 0
    explainer = Explainer(pipeline, reference_listings(pipeline, fit_rows))
    assert explainer.similar_unavailable is None and explainer.layout.meaning == []
    rows = fit_rows.loc[[0, 7], list(FEATURE_COLUMNS)].reset_index(drop=True)
    X, found = explainer.attributions(rows)
    np.testing.assert_allclose([a.total for a in found], _log_prediction(pipeline, X), rtol=0, atol=1e-4)
    assert not any("what the words mean" in label for a in found for label in a.effects)
    for i, explanation in zip((0, 7), explainer.explain(rows), strict=True):
        assert explanation.similar is not None
        assert explanation.similar[0]["name"] == fit_rows.loc[i, "name"]
        assert explanation.similar[0]["similarity"] == pytest.approx(1.0, abs=1e-3)


def test_a_stack_whose_text_starts_elsewhere_than_its_featurizer_s_has_no_similar_listings(
    models: dict[str, Any], fit_rows: pd.DataFrame
) -> None:
    pipeline = models["stack"]
    section = reference_listings(pipeline, fit_rows)
    stack = pipeline.named_steps["model"].estimator_
    stack.n_dense, kept = 0, stack.n_dense
    try:
        explainer = Explainer(pipeline, section)
    finally:
        stack.n_dense = kept
    assert explainer.index is None
    assert "do not start where the featurizer's TF-IDF does" in str(explainer.similar_unavailable)
