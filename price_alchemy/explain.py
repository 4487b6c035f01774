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

Columns are grouped to the listing's own values (:mod:`price_alchemy.feature_labels`): every
encoding of the brand (one-hot, target mean, count) counts for ``brand: <its brand>``; a name's
character n-grams count for the words they come from; word columns of text the listing lacks
(which only trees use) form one ``... words it lacks`` effect. Pure: numpy, scipy and the fitted
objects, no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
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
    _codes,
    _lookup,
)
from price_alchemy.feature_labels import FeatureLayout, RowLabels

#: Effects shown each way (up and down) per listing.
TOP_FACTORS = 5
SIMILAR_LABEL = "similar listings' prices"
LINEAR_LABEL = "linear estimate from all fields"
WORDING_LABEL = "text: overall wording"


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


def _add(effects: dict[str, float], labels: RowLabels, source: int, value: float) -> None:
    for label, share in labels.feature(source):
        effects[label] += value * share


def _linear(
    codes: CodeEncoder, ridge: Any, Z: Any, layout: FeatureLayout, rows: list[RowLabels]
) -> list[Attribution]:
    """Ridge over encoded features ``Z``: intercept + coefficient x value of each non-zero column."""
    Z = sp.csr_matrix(Z)
    coef = np.asarray(ridge.coef_, dtype=np.float64).ravel()
    sources = layout.encoded_sources(codes, Z.indices)
    values = Z.data.astype(np.float64) * coef[Z.indices]
    out = []
    for i, labels in enumerate(rows):
        effects: dict[str, float] = defaultdict(float)
        start, stop = Z.indptr[i], Z.indptr[i + 1]
        for source, value in zip(sources[start:stop].tolist(), values[start:stop].tolist(), strict=True):
            _add(effects, labels, source, value)
        out.append(Attribution(float(np.ravel(ridge.intercept_)[0]), dict(effects)))
    return out


def _contributions(booster: Any, features: Any) -> np.ndarray:
    contrib = booster.predict(features, pred_contrib=True)
    return np.asarray(contrib.toarray() if sp.issparse(contrib) else contrib, dtype=np.float64)


def _trees(pipeline: Any, X: Any, layout: FeatureLayout, rows: list[RowLabels]) -> list[Attribution]:
    """The lightgbm family (codes -> frequent columns -> LightGBM): TreeSHAP per encoded column."""
    codes, columns, booster = (step for _, step in pipeline.steps)
    contrib = _contributions(booster, columns.transform(codes.transform(X)))
    sources = layout.encoded_sources(codes, columns.columns_)
    out = []
    for i, labels in enumerate(rows):
        effects: dict[str, float] = defaultdict(float)
        for f in np.flatnonzero(contrib[i, :-1]).tolist():
            _add(effects, labels, int(sources[f]), float(contrib[i, f]))
        out.append(Attribution(float(contrib[i, -1]), dict(effects)))
    return out


def _meta_labels(stack: StackedRegressor, labels: RowLabels, n_features: int) -> Iterator[str]:
    """Labels of the stack's meta features, in :meth:`StackedRegressor._meta` order."""
    yield LINEAR_LABEL
    yield from (SIMILAR_LABEL, SIMILAR_LABEL)
    yield from labels.codes  # target means
    yield from labels.codes  # log counts
    yield from labels.numeric
    yield from [WORDING_LABEL] * (n_features - 3 - 2 * stack.n_codes - stack.n_numeric)


def _stack(
    stack: StackedRegressor, X: Any, layout: FeatureLayout, rows: list[RowLabels]
) -> list[Attribution]:
    """``w * trees + (1 - w) * ridge``: the Ridge part linear, the trees' part TreeSHAP over meta features."""
    X = sp.csr_matrix(X, dtype=np.float32)
    codes_step, ridge = (step for _, step in stack.base_.steps)
    Z = codes_step.transform(X)  # the inner Ridge's input, as in ``stack.base_.predict``
    linear = _linear(codes_step, ridge, Z, layout, rows)
    codes = _codes(X, stack.n_codes)
    text = stack._text(X)
    features = stack._meta(
        np.asarray(ridge.predict(Z), dtype=np.float64),
        stack._neighbours(text),
        _lookup(codes, stack.means_, stack.prior_),
        _lookup(codes, stack.counts_, 0.0),
        X,
        text,
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


def attribute(estimator: Any, X: Any, layout: FeatureLayout, rows: list[RowLabels]) -> list[Attribution]:
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
        return _linear(steps[0], steps[1], steps[0].transform(X), layout, rows)
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

        self.layout = FeatureLayout(pipeline.named_steps["features"])
        self.regressor = pipeline.named_steps["model"]
        self.estimator = self.regressor.estimator_  # unknown parts: TypeError on explain
        self.index: SimilarIndex | None = None
        self.similar_unavailable: str | None = NO_REFERENCES
        if references is not None:
            try:
                self.index = SimilarIndex.build(pipeline, references)
                self.similar_unavailable = None
            except ValueError as exc:
                self.similar_unavailable = f"the reference listings kept with this model are unusable: {exc}"

    def featurize(self, listings: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
        """The cleaned frame and the featurizer matrix of ``listings`` (what the pipeline computes)."""
        cleaned = self.layout.clean.transform(listings)
        return cleaned, sp.csr_matrix(self.layout.vectorize.transform(cleaned))

    def attributions(
        self, listings: pd.DataFrame, featurized: tuple[pd.DataFrame, Any] | None = None
    ) -> tuple[Any, list[Attribution]]:
        """The featurizer matrix and, per listing, baseline + effects = the model's log-price (unclipped)."""
        cleaned, X = self.featurize(listings) if featurized is None else featurized
        return X, attribute(self.estimator, X, self.layout, self.labels(listings, cleaned, X))

    def labels(self, listings: pd.DataFrame, cleaned: pd.DataFrame, X: Any) -> list[RowLabels]:
        """Each listing's column labels (``X``: its featurizer rows, CSR)."""
        records = zip(listings.to_dict("records"), cleaned.to_dict("records"), strict=True)
        return [
            RowLabels(self.layout, r, c, X.indices[X.indptr[i] : X.indptr[i + 1]])
            for i, (r, c) in enumerate(records)
        ]

    def price_and_explain(
        self, listings: pd.DataFrame, wanted: list[int]
    ) -> tuple[np.ndarray, list[Explanation]]:
        """Prices of all ``listings`` (as the pipeline's ``predict``) and explanations of rows ``wanted``,
        from one featurization."""
        cleaned, X = self.featurize(listings)
        prices = np.asarray(self.regressor.predict(X), dtype=np.float64)
        part = (cleaned.iloc[wanted], X[wanted])
        return prices, self.explain(listings.iloc[wanted], featurized=part)

    def explain(
        self, listings: pd.DataFrame, n: int = TOP_FACTORS, featurized: tuple[pd.DataFrame, Any] | None = None
    ) -> list[Explanation]:
        """Per listing: the top ``n`` effects each way, the rest summed, and the most similar listings."""
        X, attributions = self.attributions(listings, featurized)
        similar = None if self.index is None else self.index.nearest(self.index.vectors(X))
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
