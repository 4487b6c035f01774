"""Cleaning and feature extraction: one sklearn Pipeline that travels with the model.

The featurizer turns raw listing columns (schema.FEATURE_COLUMNS, as they arrive from a file,
the warehouse or an API request) into one sparse matrix:

- word 1..n-gram TF-IDF of the name, and char n-grams of the name (robust to sizes and typos);
- word TF-IDF of all text (name, brand, category, description);
- one-hot brand, category levels, condition, shipping and condition x shipping, all tolerant of
  values never seen in training;
- a few dense signals (description length, missing brand, missing description).

The target is modelled as log1p(price) (:class:`~price_alchemy.estimators.LogPriceRegressor`), so
the squared error the estimators minimise is the RMSLE the project reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from price_alchemy.estimators import LogPriceRegressor
from price_alchemy.params import FeatureParams
from price_alchemy.schema import FEATURE_COLUMNS, NO_DESCRIPTION

_TOKEN = r"(?u)\b\w+\b"  # keep one-character tokens: sizes (S, M, L), counts, "x"
CATEGORICAL = ("brand", "cat1", "cat2", "category", "condition", "shipping", "cond_ship")
NUMERIC = ("desc_words", "no_brand", "no_description")


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), "").astype(str).str.strip()


def clean_listings(listings: pd.DataFrame) -> pd.DataFrame:
    """Raw listing columns -> the model's cleaned columns. Pure; accepts unseen and missing values."""
    missing = [c for c in FEATURE_COLUMNS if c not in listings.columns]
    if missing:
        raise KeyError(f"listing frame lacks columns: {', '.join(missing)}")
    name = _text(listings["name"])
    brand = _text(listings["brand_name"])
    category = _text(listings["category_name"])
    description = _text(listings["item_description"])
    no_description = description.eq("") | description.eq(NO_DESCRIPTION)
    description = description.mask(no_description, "")
    levels = category.str.split("/", n=2)
    cat1 = levels.str[0].fillna("").astype(str)
    cat2 = cat1 + "/" + levels.str[1].fillna("").astype(str)
    condition = (
        pd.to_numeric(listings["item_condition_id"], errors="coerce").fillna(0).astype(int).astype(str)
    )
    shipping = pd.to_numeric(listings["shipping"], errors="coerce").fillna(0).astype(int).astype(str)
    return pd.DataFrame(
        {
            "name": name,
            "text": name
            + " "
            + brand
            + " "
            + category.str.replace("/", " ", regex=False)
            + " "
            + description,
            "brand": brand.str.lower(),
            "cat1": cat1,
            "cat2": cat2,
            "category": category,
            "condition": condition,
            "shipping": shipping,
            "cond_ship": condition + "_" + shipping,
            "desc_words": np.log1p(description.str.count(r"\S+").to_numpy(dtype=np.float32)),
            "no_brand": brand.eq("").to_numpy(dtype=np.float32),
            "no_description": no_description.to_numpy(dtype=np.float32),
        },
        index=listings.index,
    )


def build_featurizer(params: FeatureParams) -> Pipeline:
    """Unfitted cleaning + vectorizing pipeline: raw listings -> sparse float32 matrix."""
    transformers: list[tuple[str, object, str | list[str]]] = [
        (
            "name_words",
            TfidfVectorizer(
                token_pattern=_TOKEN,
                ngram_range=(1, params.name_ngram_max),
                max_features=params.name_max_features,
                sublinear_tf=True,
                dtype=np.float32,
            ),
            "name",
        ),
        (
            "text_words",
            TfidfVectorizer(
                token_pattern=_TOKEN,
                ngram_range=(1, params.text_ngram_max),
                max_features=params.text_max_features,
                min_df=params.text_min_df,
                sublinear_tf=True,
                dtype=np.float32,
            ),
            "text",
        ),
        (
            "categorical",
            OneHotEncoder(handle_unknown="ignore", dtype=np.float32),
            list(CATEGORICAL),
        ),
        ("numeric", "passthrough", list(NUMERIC)),
    ]
    if params.char_max_features > 0:
        transformers.insert(
            1,
            (
                "name_chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, 4),
                    max_features=params.char_max_features,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
                "name",
            ),
        )
    columns = ColumnTransformer(transformers, sparse_threshold=1.0)
    return Pipeline(
        [
            ("clean", FunctionTransformer(clean_listings, validate=False)),
            ("vectorize", columns),
        ]
    )


def build_pipeline(featurizer: Pipeline, estimator: RegressorMixin) -> Pipeline:
    """Featurizer + estimator: fitted on dollars, learning log1p(price), predicting dollars."""
    return Pipeline([("features", featurizer), ("model", LogPriceRegressor(estimator))])
