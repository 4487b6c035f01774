"""Why this price: each listing's log-price split into readable effects, from the model itself.

A model predicts ``log1p(price)`` (:class:`~price_alchemy.estimators.LogPriceRegressor`); this
module writes that number as ``baseline + sum(effects)``, one effect per readable feature of the
listing (``name: "iphone"``, ``brand: Apple``, ``condition: 1``, ``shipping: paid by seller``):

- a Ridge (the ``ridge`` family, and the Ridge inside a stack): coefficient x feature value of
  every non-zero column, the baseline being the intercept, so the sum is the Ridge's prediction
  exactly (up to float32 rounding);
- LightGBM (the ``lightgbm`` family, and the trees a stack puts over its meta features): the
  booster's own TreeSHAP (``pred_contrib=True``), the baseline being its expected value;
- a stack ``w * trees + (1 - w) * ridge`` and a weighted blend: the same weights applied to the
  parts' baselines and effects.

Columns are grouped to the listing's own values: every encoding of the brand (one-hot, target
mean, count) counts for ``brand: <its brand>``; a name's character n-grams count for the words
they come from; word columns of text the listing lacks (which only trees use) form one
``... words it lacks`` effect. Pure: numpy, scipy and the fitted objects, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from price_alchemy.estimators import (
    CodeEncoder,
    FrequentColumns,
    StackedRegressor,
    WeightedBlend,
    _lookup,
    _split_codes,
)
from price_alchemy.features import CODE_COLUMNS, NUMERIC
from price_alchemy.names import MISSING

#: Effects shown each way (up and down) per listing.
TOP_FACTORS = 5
SIMILAR_LABEL = "similar listings' prices"
LINEAR_LABEL = "linear estimate from all fields"
WORDING_LABEL = "text: overall wording"
_WORD = re.compile(r"(?u)\b\w+\b")
_CUT = 60  # characters of a field value shown in a label


@dataclass(frozen=True)
class Attribution:
    """``baseline + sum(effects.values())`` equals the model's log-price for one listing."""

    baseline: float
    effects: dict[str, float]

    @property
    def total(self) -> float:
        return self.baseline + float(sum(self.effects.values()))

    def top(self, n: int = TOP_FACTORS) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The ``n`` largest positive effects (largest first) and ``n`` most negative (most negative first)."""
        ordered = sorted(self.effects.items(), key=lambda kv: (-kv[1], kv[0]))
        up = [(k, v) for k, v in ordered if v > 0][:n]
        down = [(k, v) for k, v in reversed(ordered) if v < 0][:n]
        return up, down


def _combine(parts: list[tuple[float, Attribution]]) -> Attribution:
    effects: dict[str, float] = defaultdict(float)
    for weight, part in parts:
        for key, value in part.effects.items():
            effects[key] += weight * value
    return Attribution(sum(w * p.baseline for w, p in parts), dict(effects))


def _cut(value: str) -> str:
    return value if len(value) <= _CUT else value[: _CUT - 1] + "…"


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


@dataclass(frozen=True)
class _Block:
    """One TF-IDF block of the featurizer: its columns, vocabulary and analyzer."""

    name: str
    start: int
    stop: int
    vectorizer: Any
    field: str  # the cleaned column it reads


class _Layout:
    """Where each featurizer column comes from (see :mod:`price_alchemy.features`)."""

    def __init__(self, featurizer: Any) -> None:
        self.clean = featurizer.named_steps["clean"]
        self.vectorize = featurizer.named_steps["vectorize"]
        slices = self.vectorize.output_indices_
        self.width = max(s.stop for s in slices.values())
        self.n_codes, self.n_numeric = len(CODE_COLUMNS), len(NUMERIC)
        if (
            slices["codes"] != slice(0, self.n_codes)
            or slices["numeric"].stop != self.n_codes + self.n_numeric
        ):
            raise ValueError("the featurizer's layout is not the package's (codes, numeric, text)")
        self.blocks = []
        for name, field in (("name_words", "name"), ("name_chars", "name"), ("text_words", "text")):
            if name not in self.vectorize.named_transformers_:
                continue
            vectorizer = self.vectorize.named_transformers_[name]
            if hasattr(vectorizer, "steps"):  # TF-IDF followed by its weight
                vectorizer = vectorizer.steps[0][1]
            part = slices[name]
            self.blocks.append(_Block(name, part.start, part.stop, vectorizer, field))
        self.analyzers = {b.name: b.vectorizer.build_analyzer() for b in self.blocks}

    def row_labels(self, listing: Mapping[str, Any], cleaned: Mapping[str, Any]) -> _RowLabels:
        return _RowLabels(self, listing, cleaned)


class _RowLabels:
    """The readable label(s) of every featurizer column for one listing."""

    def __init__(self, layout: _Layout, listing: Mapping[str, Any], cleaned: Mapping[str, Any]) -> None:
        self.layout = layout
        brand = _cut(_text(listing.get("brand_name"))) or MISSING
        category = _cut(_text(listing.get("category_name"))) or MISSING
        condition = str(listing.get("item_condition_id"))
        shipping = "paid by seller" if int(listing.get("shipping") or 0) == 1 else "paid by buyer"
        by_column = {
            "brand": f"brand: {brand}",
            "cat1": f"category: {category}",
            "cat2": f"category: {category}",
            "category": f"category: {category}",
            "condition": f"condition: {condition}",
            "shipping": f"shipping: {shipping}",
            "cond_ship": f"condition and shipping: {condition}, {shipping}",
            "brand_cat": f"brand in category: {brand} in {category}",
            "cat_cond": f"category and condition: {category}, {condition}",
        }
        self.codes = [by_column[c] for c in CODE_COLUMNS]
        words = round(float(np.expm1(float(cleaned["desc_words"]))))
        numeric = {
            "desc_words": f"description length: {words} words",
            "no_brand": by_column["brand"],
            "no_description": "description: " + (MISSING if cleaned["no_description"] else "given"),
        }
        self.numeric = [numeric[c] for c in NUMERIC]
        self.present: dict[int, list[tuple[str, float]]] = {}
        self.absent: dict[str, str] = {}
        name_terms: set[str] = set()
        for block in layout.blocks:
            analyze = layout.analyzers[block.name]
            doc = str(cleaned[block.field])
            vocabulary = block.vectorizer.vocabulary_
            if block.name == "name_chars":
                self._chars(block, doc)
                self.absent[block.name] = "name: letter groups it lacks"
                continue
            if block.name == "name_words":
                name_terms = set(analyze(doc))
            else:
                name_terms |= set(analyze(str(cleaned["name"])))
            for term in set(analyze(doc)):
                column = vocabulary.get(term)
                if column is not None:
                    field = "name" if term in name_terms else "text"
                    self.present[block.start + column] = [(f'{field}: "{_cut(term)}"', 1.0)]
            self.absent[block.name] = ("name" if block.field == "name" else "text") + ": words it lacks"

    def _chars(self, block: _Block, name: str) -> None:
        """Each character n-gram's effect shared among the name's words that contain it."""
        analyze = self.layout.analyzers[block.name]
        vocabulary = block.vectorizer.vocabulary_
        owners: dict[int, Counter[str]] = defaultdict(Counter)
        for word in block.vectorizer.build_preprocessor()(name).split():
            label = f'name: "{_cut(" ".join(_WORD.findall(word)) or word)}"'
            for gram in analyze(word):
                column = vocabulary.get(gram)
                if column is not None:
                    owners[block.start + column][label] += 1
        for column, counts in owners.items():
            total = sum(counts.values())
            self.present[column] = [(label, n / total) for label, n in counts.items()]

    def feature(self, column: int) -> list[tuple[str, float]]:
        """Labels and shares of featurizer column ``column``."""
        layout = self.layout
        if column < layout.n_codes:
            return [(self.codes[column], 1.0)]
        if column < layout.n_codes + layout.n_numeric:
            return [(self.numeric[column - layout.n_codes], 1.0)]
        found = self.present.get(column)
        if found is not None:
            return found
        block = next(b for b in layout.blocks if b.start <= column < b.stop)
        return [(self.absent[block.name], 1.0)]


def _encoded_source(encoder: CodeEncoder, layout: _Layout, column: int) -> int:
    """The featurizer column behind a :class:`CodeEncoder` output column (a code column for its encodings)."""
    rest = layout.width - encoder.n_codes
    if column < rest:
        return encoder.n_codes + column
    column -= rest
    if encoder.one_hot:
        width = int(np.sum(encoder.sizes_))
        if column < width:
            return int(np.searchsorted(np.cumsum(encoder.sizes_), column, side="right"))
        column -= width
    return column % encoder.n_codes  # target means, then log counts, per code column


def _add(effects: dict[str, float], labels: _RowLabels, source: int, value: float) -> None:
    for label, share in labels.feature(source):
        effects[label] += value * share


def _linear(
    codes: CodeEncoder, ridge: Any, X: Any, layout: _Layout, rows: list[_RowLabels]
) -> list[Attribution]:
    """Ridge over encoded features: intercept + coefficient x value of each non-zero column."""
    Z = sp.csr_matrix(codes.transform(X))
    coef = np.asarray(ridge.coef_, dtype=np.float64).ravel()
    out = []
    for i, labels in enumerate(rows):
        effects: dict[str, float] = defaultdict(float)
        start, stop = Z.indptr[i], Z.indptr[i + 1]
        for column, value in zip(Z.indices[start:stop], Z.data[start:stop], strict=True):
            _add(effects, labels, _encoded_source(codes, layout, int(column)), float(value) * coef[column])
        out.append(Attribution(float(np.ravel(ridge.intercept_)[0]), dict(effects)))
    return out


def _contributions(booster: Any, features: Any) -> np.ndarray:
    contrib = booster.predict(features, pred_contrib=True)
    return np.asarray(contrib.toarray() if sp.issparse(contrib) else contrib, dtype=np.float64)


def _trees(pipeline: Any, X: Any, layout: _Layout, rows: list[_RowLabels]) -> list[Attribution]:
    """The lightgbm family (codes -> frequent columns -> LightGBM): TreeSHAP per encoded column."""
    codes, columns, booster = (step for _, step in pipeline.steps)
    contrib = _contributions(booster, columns.transform(codes.transform(X)))
    out = []
    for i, labels in enumerate(rows):
        effects: dict[str, float] = defaultdict(float)
        for f in np.flatnonzero(contrib[i, :-1]):
            _add(effects, labels, _encoded_source(codes, layout, int(columns.columns_[f])), contrib[i, f])
        out.append(Attribution(float(contrib[i, -1]), dict(effects)))
    return out


def _meta_labels(stack: StackedRegressor, labels: _RowLabels, n_features: int) -> Iterator[str]:
    """Labels of the stack's meta features, in :meth:`StackedRegressor._meta` order."""
    yield LINEAR_LABEL
    yield from (SIMILAR_LABEL, SIMILAR_LABEL)
    yield from labels.codes  # target means
    yield from labels.codes  # log counts
    yield from labels.numeric
    yield from [WORDING_LABEL] * (n_features - 3 - 2 * stack.n_codes - stack.n_numeric)


def _stack(stack: StackedRegressor, X: Any, layout: _Layout, rows: list[_RowLabels]) -> list[Attribution]:
    """``w * trees + (1 - w) * ridge``: the Ridge part linear, the trees' part TreeSHAP over meta features."""
    X = sp.csr_matrix(X, dtype=np.float32)
    codes_step, ridge = (step for _, step in stack.base_.steps)
    linear = _linear(codes_step, ridge, X, layout, rows)
    codes, _ = _split_codes(X, stack.n_codes)
    features = stack._meta(
        np.asarray(stack.base_.predict(X), dtype=np.float64),
        stack._neighbours(stack._text(X)),
        _lookup(codes, stack.means_, stack.prior_),
        _lookup(codes, stack.counts_, 0.0),
        X,
    )
    contrib = _contributions(stack.meta_, features)
    w = stack.trees_weight_
    out = []
    for i, labels in enumerate(rows):
        effects: dict[str, float] = defaultdict(float)
        names = _meta_labels(stack, labels, features.shape[1])
        for label, value in zip(names, contrib[i, :-1], strict=True):
            effects[label] += float(value)
        trees = Attribution(float(contrib[i, -1]), dict(effects))
        out.append(_combine([(1.0 - w, linear[i]), (w, trees)]))
    return out


def attribute(estimator: Any, X: Any, layout: _Layout, rows: list[_RowLabels]) -> list[Attribution]:
    """Per row of featurizer output ``X``: the log-price ``estimator`` predicts, split into effects."""
    if isinstance(estimator, StackedRegressor):
        return _stack(estimator, X, layout, rows)
    if isinstance(estimator, WeightedBlend):
        weights = np.asarray(estimator.weights, dtype=np.float64)
        weights = weights / weights.sum()
        parts = [attribute(est, X, layout, rows) for est in estimator.estimators_]
        return [
            _combine([(float(w), p[i]) for w, p in zip(weights, parts, strict=True)])
            for i in range(len(rows))
        ]
    steps = [step for _, step in getattr(estimator, "steps", [])]
    if len(steps) == 2 and isinstance(steps[0], CodeEncoder) and hasattr(steps[1], "coef_"):
        return _linear(steps[0], steps[1], X, layout, rows)
    if len(steps) == 3 and isinstance(steps[0], CodeEncoder) and isinstance(steps[1], FrequentColumns):
        return _trees(estimator, X, layout, rows)
    raise TypeError(f"cannot explain a {type(estimator).__name__}")


#: Why ``similar`` is absent for a model whose profile keeps no reference listings.
NO_REFERENCES = "this model version was trained before reference listings were kept with models"


@dataclass(frozen=True)
class Explanation:
    """One listing's explanation: ``baseline + sum(up) + sum(down) + others == log_price``."""

    log_price: float
    baseline: float
    up: list[tuple[str, float]]
    down: list[tuple[str, float]]
    others: float
    similar: list[dict[str, Any]] | None
    similar_unavailable: str | None


class Explainer:
    """Explains a fitted Price Alchemy pipeline's predictions (featurizer + LogPriceRegressor).

    ``references`` is the profile's reference-listings section (None for an older model: then
    explanations carry no ``similar`` and say why). Building it indexes them once.
    """

    def __init__(self, pipeline: Any, references: Any = None) -> None:
        from price_alchemy.similar import SimilarIndex

        self.layout = _Layout(pipeline.named_steps["features"])
        self.estimator = pipeline.named_steps["model"].estimator_  # unknown parts: TypeError on explain
        self.index: SimilarIndex | None = None
        self.similar_unavailable: str | None = NO_REFERENCES
        if references is not None:
            try:
                self.index = SimilarIndex.build(pipeline, references)
                self.similar_unavailable = None
            except ValueError as exc:
                self.similar_unavailable = f"the reference listings kept with this model are unusable: {exc}"

    def featurize(self, listings: pd.DataFrame) -> tuple[Any, list[_RowLabels]]:
        """The featurizer matrix of ``listings`` and each row's column labels."""
        cleaned = self.layout.clean.transform(listings)
        X = self.layout.vectorize.transform(cleaned)
        records = listings.to_dict("records")
        rows = [
            self.layout.row_labels(r, c) for r, c in zip(records, cleaned.to_dict("records"), strict=True)
        ]
        return X, rows

    def attributions(self, listings: pd.DataFrame) -> tuple[Any, list[Attribution]]:
        """The featurizer matrix and, per listing, baseline + effects = the model's log-price (unclipped)."""
        X, rows = self.featurize(listings)
        return X, attribute(self.estimator, X, self.layout, rows)

    def explain(self, listings: pd.DataFrame, n: int = TOP_FACTORS) -> list[Explanation]:
        """Per listing: the top ``n`` effects each way, the rest summed, and the most similar listings."""
        from price_alchemy.similar import text_vectors

        X, attributions = self.attributions(listings)
        similar = None if self.index is None else self.index.nearest(text_vectors(X))
        out = []
        for i, found in enumerate(attributions):
            up, down = found.top(n)
            shown = sum(v for _, v in up) + sum(v for _, v in down)
            total = found.total
            out.append(
                Explanation(
                    log_price=total,
                    baseline=found.baseline,
                    up=[(k, float(v)) for k, v in up],
                    down=[(k, float(v)) for k, v in down],
                    others=float(total - found.baseline - shown),
                    similar=None if similar is None else similar[i],
                    similar_unavailable=self.similar_unavailable,
                )
            )
        return out
