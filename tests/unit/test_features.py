"""The featurizer: cleaning, category codes and the fixed column layout the model relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from price_alchemy.features import (
    CODE_COLUMNS,
    LEADING_COLUMNS,
    NUMERIC,
    CategoryCodes,
    _clean_rowwise,
    _clean_vectorized,
    build_featurizer,
    clean_listings,
)
from price_alchemy.params import FeatureParams

pytestmark = pytest.mark.unit


def _listings(**overrides: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "name": ["Nike Air Max 90", "Lularoe leggings OS"],
        "item_condition_id": [1, 3],
        "category_name": ["Men/Shoes/Athletic", "Women/Athletic Apparel/Pants, Tights, Leggings"],
        "brand_name": ["Nike", None],
        "shipping": [0, 1],
        "item_description": ["Brand new in box", "No description yet"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_listings_builds_levels_and_crosses() -> None:
    clean = clean_listings(_listings())
    assert clean.loc[0, "cat2"] == "Men/Shoes"
    assert clean.loc[0, "brand_cat"] == "nike|Men/Shoes/Athletic"
    assert clean.loc[1, "cat_cond"] == "Women/Athletic Apparel/Pants, Tights, Leggings|3"
    assert clean.loc[1, "no_brand"] == 1.0 and clean.loc[1, "no_description"] == 1.0
    assert clean.loc[1, "text"].startswith("Lularoe leggings OS")


def test_row_by_row_cleaning_equals_the_vectorized_cleaning(synthetic_listings: pd.DataFrame) -> None:
    """The API's small-frame path must give the model exactly what training gave it."""
    odd = _listings(
        name=["  padded name\t", "Ünïcode  ✓ name"],
        category_name=[None, "A/B/C/D/E"],
        brand_name=["", "MiXeD Case"],
        item_description=["word\u00a0word\nline   three", None],
    )
    no_category = _listings(category_name=["", "Single"])
    frames = [synthetic_listings.head(300).reset_index(drop=True), odd, no_category]
    frames.append(synthetic_listings.sample(50, random_state=1))  # a shuffled, non-default index
    for frame in frames:
        fast, reference = _clean_rowwise(frame), _clean_vectorized(frame)
        pd.testing.assert_frame_equal(fast, reference)
        assert list(fast.dtypes.astype(str))[-3:] == ["float32"] * 3


def test_small_integer_frames_take_the_row_path_and_others_the_vectorized_one() -> None:
    frame = _listings()
    assert clean_listings(frame).equals(_clean_rowwise(frame))
    as_text = frame.astype({"item_condition_id": str})  # a file read as text still cleans the same
    pd.testing.assert_frame_equal(clean_listings(as_text), _clean_rowwise(frame))


def test_category_codes_are_stable_and_unseen_values_get_zero() -> None:
    train = pd.DataFrame({"brand": ["b", "a", "b"], "cond": ["1", "2", "1"]})
    codes = CategoryCodes().fit(train)
    out = codes.transform(pd.DataFrame({"brand": ["a", "b", "zzz", ""], "cond": ["2", "9", "1", "1"]}))
    np.testing.assert_array_equal(out.toarray(), [[1, 2], [2, 0], [0, 1], [0, 1]])


def test_every_block_is_csr_so_the_stacking_takes_scipy_s_direct_path() -> None:
    """One dense block sends the ColumnTransformer's stacking through COO: several times slower."""
    featurizer = build_featurizer(FeatureParams(name_max_features=50, text_max_features=50, text_min_df=1))
    listings = _listings()
    featurizer.fit(listings)
    cleaned = featurizer.named_steps["clean"].transform(listings)
    for name, step, columns in featurizer.named_steps["vectorize"].transformers_:
        if name != "remainder":
            assert sp.issparse(step.transform(cleaned[columns])), name


def test_the_featurizer_output_starts_with_codes_then_numeric() -> None:
    """The model finds the categoricals by position: this layout is a contract with estimators.py."""
    featurizer = build_featurizer(FeatureParams(name_max_features=50, text_max_features=50, text_min_df=1))
    X = featurizer.fit_transform(_listings()).toarray()
    assert X.shape[1] > LEADING_COLUMNS
    codes = X[:, : len(CODE_COLUMNS)]
    assert np.all(codes >= 1) and np.allclose(codes, np.round(codes))
    numeric = X[:, len(CODE_COLUMNS) : LEADING_COLUMNS]
    assert numeric.shape[1] == len(NUMERIC)
    np.testing.assert_array_equal(numeric[:, 1], [0.0, 1.0])  # no_brand


def test_the_featurizer_accepts_unseen_missing_and_single_rows() -> None:
    featurizer = build_featurizer(FeatureParams(name_max_features=50, text_max_features=50, text_min_df=1))
    featurizer.fit(_listings())
    odd = _listings(
        name=[None, "x"],
        brand_name=["Unknown Brand", None],
        category_name=[None, "New/Cat/Here"],
        item_description=[None, ""],
        item_condition_id=[None, 5],
        shipping=[None, 1],
    )
    single = featurizer.transform(odd.iloc[[0]]).toarray()
    assert single.shape[0] == 1 and np.all(np.isfinite(single))
    codes = featurizer.transform(odd).toarray()[:, : len(CODE_COLUMNS)]
    brand, category = CODE_COLUMNS.index("brand"), CODE_COLUMNS.index("category")
    assert codes[0, brand] == 0 and codes[1, brand] > 0  # missing brand is a known value ("")
    assert codes[0, category] == 0 and codes[1, category] == 0


def test_the_text_weight_scales_only_the_all_text_block() -> None:
    small = FeatureParams(name_max_features=50, text_max_features=50, text_min_df=1, char_max_features=0)
    plain = (
        build_featurizer(small.model_copy(update={"text_weight": 1.0})).fit_transform(_listings()).toarray()
    )
    doubled = (
        build_featurizer(small.model_copy(update={"text_weight": 2.0})).fit_transform(_listings()).toarray()
    )
    nonzero = plain != 0
    ratios = np.round(doubled[nonzero] / plain[nonzero], 6)
    assert set(ratios) == {1.0, 2.0}
    np.testing.assert_array_equal(doubled[:, :LEADING_COLUMNS], plain[:, :LEADING_COLUMNS])


def test_the_compact_vocabulary_survives_skops_and_pickle() -> None:
    import pickle

    import skops.io as sio

    from price_alchemy.estimators import TRUSTED_TYPES
    from price_alchemy.features import CompactTfidfVectorizer

    docs = ["Nike Air Max 90 größe 42", "Lularoe leggings OS", "bundle 3x Nike socks \u2764"]
    vectorizer = CompactTfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)).fit(docs)
    for restored in (
        sio.loads(sio.dumps(vectorizer), trusted=list(TRUSTED_TYPES)),
        pickle.loads(pickle.dumps(vectorizer)),
    ):
        assert restored.vocabulary_ == vectorizer.vocabulary_
        np.testing.assert_array_equal(
            restored.transform(docs).toarray(), vectorizer.transform(docs).toarray()
        )
    assert "vocabulary_" not in vectorizer.__getstate__()  # saved as arrays, not a dict
