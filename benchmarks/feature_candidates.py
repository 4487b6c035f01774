"""Issue 13 feature candidates, weighed by the protocol before any of them enters the model.

The directions the issue names that the model does not have yet, each added alone to the
packaged featurizer:

- ``units``: the number of units a listing sells ("lot of 3", "12 pcs", "set of 4", "x2"), parsed
  from the name and description, as ``log(units)`` in the numeric block. TF-IDF prices "lot",
  "of" and "6" as separate words, so a linear model cannot learn that more units cost more.
- ``brand x name``: a TF-IDF block of the name's words crossed with the brand ("nike|air"), so a
  word can be worth more under one brand than another.
- ``category x description``: the description's words crossed with the top-level category
  ("electronics|case"): "case" is cheap in Electronics, not in Jewelry.

The protocol of ``cv_protocol.py`` on the real sample: ``--seeds`` x ``--folds`` repeated CV, the
same fixed stack as ``knn_pruning.py`` for every candidate, paired differences to the packaged
featurizer with the Nadeau-Bengio corrected standard error; the default changes only for a gain
above 2 SE.

    .venv/bin/python benchmarks/feature_candidates.py [--data PATH] [--seeds 3] [--folds 5]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from cv_protocol import (
    REFERENCE,
    Paired,
    fixed_stack_config,
    protocol_arguments,
    repeated_folds,
    score_reference,
)
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from price_alchemy.data.files import read_listings
from price_alchemy.estimators import StackedRegressor
from price_alchemy.features import (
    CODE_COLUMNS,
    MEANING_COLUMNS,
    NUMERIC,
    build_featurizer,
    build_pipeline,
    clean_listings,
)
from price_alchemy.params import load_params
from price_alchemy.training.evaluate import rmsle
from price_alchemy.training.stages import usable_for_training

BASELINE = "packaged features"
_UNITS = re.compile(
    r"\b(?:lot|set|bundle|pack|box|case)\s+of\s+(\d{1,3})\b"
    r"|\b(\d{1,3})\s*(?:pcs|pieces|piece|pc|pairs|pk|packs|count|ct)\b"
    r"|\b(\d{1,2})\s*x\b(?!\s*\d)|\bx\s*(\d{1,2})\b"
)
_WORD = re.compile(r"(?u)\b\w+\b")
MAX_UNITS = 200


def units(text: pd.Series) -> np.ndarray:
    """The largest count of units (2..200) the text names, else 1."""

    def one(value: str) -> int:
        counts = [int(x) for groups in _UNITS.findall(value) for x in groups if x]
        counts = [c for c in counts if 1 < c <= MAX_UNITS]
        return max(counts, default=1)

    return np.fromiter((one(v) for v in text.str.lower()), dtype=np.float64, count=len(text))


def _crossed(prefix: pd.Series, text: pd.Series) -> pd.Series:
    """Each word of ``text`` as ``prefix|word`` (nothing where the prefix is empty)."""
    return pd.Series(
        [
            " ".join(f"{p}|{w}" for w in _WORD.findall(t.lower())) if p else ""
            for p, t in zip(prefix, text, strict=True)
        ],
        index=text.index,
    )


def _extra_columns(listings: pd.DataFrame) -> pd.DataFrame:
    cleaned = clean_listings(listings)
    text = listings["name"].fillna("").astype(str) + " " + listings["item_description"].fillna("").astype(str)
    brand = cleaned["brand"].str.replace(r"\W+", "_", regex=True)
    category = cleaned["cat1"].str.lower().str.replace(r"\W+", "_", regex=True)
    description = listings["item_description"].fillna("").astype(str)
    return cleaned.assign(
        units=np.log(units(text)).astype(np.float32),
        brand_name_words=_crossed(brand, cleaned["name"]),
        category_description_words=_crossed(category, description),
    )


def _cross_block(column: str, weight: float) -> tuple[str, Any, str]:
    vectorizer = TfidfVectorizer(
        sublinear_tf=True, dtype=np.float32, token_pattern=r"\S+", min_df=2, max_features=50_000
    )
    scaled = Pipeline(
        [
            ("tfidf", vectorizer),
            ("weight", FunctionTransformer(lambda X: X * np.float32(weight))),
        ]
    )
    return (column, scaled, column)


def variant(featurizer: Pipeline, *, numeric: tuple[str, ...] = (), blocks: tuple[Any, ...] = ()) -> Pipeline:
    """The packaged featurizer with extra numeric columns and extra text blocks at the end."""
    columns: ColumnTransformer = featurizer.named_steps["vectorize"]
    transformers = [
        (name, step, [*NUMERIC, *numeric] if name == "numeric" else cols)
        for name, step, cols in columns.transformers
    ]
    return Pipeline(
        [
            ("clean", FunctionTransformer(_extra_columns, validate=False)),
            ("vectorize", ColumnTransformer([*transformers, *blocks], sparse_threshold=1.0)),
        ]
    )


CANDIDATES: dict[str, Callable[[Pipeline], tuple[Pipeline, int]]] = {
    BASELINE: lambda f: (f, len(NUMERIC)),
    "+ units": lambda f: (variant(f, numeric=("units",)), len(NUMERIC) + 1),
    "+ brand x name": lambda f: (
        variant(f, blocks=(_cross_block("brand_name_words", 0.5),)),
        len(NUMERIC),
    ),
    "+ category x description": lambda f: (
        variant(f, blocks=(_cross_block("category_description_words", 0.5),)),
        len(NUMERIC),
    ),
}


def stack(n_numeric: int, config: dict[str, Any]) -> StackedRegressor:
    """The packaged stack (``families.make_estimator``'s) with ``n_numeric`` numeric columns."""
    keys = set(StackedRegressor(0, 0).get_params()) - {"n_codes", "n_numeric", "n_dense"}
    settings = {k: v for k, v in config.items() if k in keys}
    return StackedRegressor(len(CODE_COLUMNS), n_numeric, n_dense=MEANING_COLUMNS, **settings)


def main() -> int:
    args = protocol_arguments(__doc__).parse_args()
    params = load_params()
    config = fixed_stack_config(params)
    listings = usable_for_training(read_listings(args.data).listings)
    text = listings["name"].fillna("") + " " + listings["item_description"].fillna("")
    print(
        f"data: {args.data} ({len(listings):,} priced rows); {args.seeds} seeds x {args.folds} folds; "
        f"{(units(text) > 1).mean():.1%} of listings name more than one unit"
    )
    paired = Paired(args.seeds * args.folds)
    for seed, fold, test, rest in repeated_folds(listings, args.seeds, args.folds):
        y_test = score_reference(paired, test, rest)
        for name, make in CANDIDATES.items():
            featurizer, n_numeric = make(build_featurizer(params.features))
            pipeline = build_pipeline(featurizer, stack(n_numeric, config))
            pipeline.fit(rest, rest["price"].to_numpy())
            paired.add(name, rmsle(y_test, pipeline.predict(test)))
        print(
            f"seed {seed} fold {fold}: "
            + "  ".join(f"{name} {values[-1]:.4f}" for name, values in paired.scores.items()),
            flush=True,
        )
    print()
    print("\n".join(paired.report(REFERENCE, BASELINE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
