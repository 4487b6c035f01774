"""The training listings most like a listing: what is kept with a model, and the search.

Training keeps, in the model's training profile (``names.PROFILE_ARTIFACT``, under
``names.REFERENCE_LISTINGS``), at most :data:`MAX_REFERENCE_ROWS` training listings with their
display fields cut to :data:`FIELD_CUTS` characters (name, brand, category, condition, price):

- when the model holds a stack, they are the rows its text kNN searches
  (:attr:`StackedRegressor.knn_reference_`), identified by their positions in it (``"source":
  "knn"``), so the listings shown are among those the model prices from;
- otherwise the first training rows, with shipping and the description's first
  :data:`DESCRIPTION_CUT` characters (``"source": "text"``); the API runs them through the
  model's own featurizer once, at load, to index their text the way the kNN does.

Either way a listing is compared by cosine similarity of the featurizer's text columns
(TF-IDF of name words, name characters and all text): the stack's kNN measure before it leaves
out its most common columns (``tuning.stack.knn_max_df``), so a listing's first is itself and
the five shown are mostly, not always, among the kNN's neighbours. Pure: the profile
section is plain JSON, nothing here deserializes code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from price_alchemy.estimators import StackedRegressor, WeightedBlend
from price_alchemy.features import text_start
from price_alchemy.schema import FEATURE_COLUMNS, PRICE

log = logging.getLogger(__name__)

MAX_REFERENCE_ROWS = 10_000
#: Characters kept of each text field of a reference listing.
FIELD_CUTS = {"name": 80, "brand_name": 50, "category_name": 120}
DESCRIPTION_CUT = 200
SIMILAR_COUNT = 5


def _stack_of(estimator: Any) -> StackedRegressor | None:
    if isinstance(estimator, StackedRegressor):
        return estimator
    if isinstance(estimator, WeightedBlend):
        return next((s for s in map(_stack_of, estimator.estimators_) if s is not None), None)
    return None


def _knn_rows(stack: StackedRegressor, n: int) -> np.ndarray:
    """The fit rows the stack's kNN kept (the sampling of :meth:`StackedRegressor.fit`, replayed)."""
    rng = np.random.default_rng(stack.seed)
    if n > stack.max_meta_rows:
        rng.choice(n, stack.max_meta_rows, replace=False)
    if n <= stack.knn_max_reference:
        return np.arange(n)
    return np.sort(rng.choice(n, stack.knn_max_reference, replace=False))


def _text(value: Any, cut: int) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)[:cut]


def _record(row: Mapping[str, Any], *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {f: _text(row.get(f), cut) for f, cut in FIELD_CUTS.items()}
    out["item_condition_id"] = int(row["item_condition_id"])
    out["price"] = round(float(row[PRICE]), 2)
    if full:  # what the featurizer needs to index it again
        out["shipping"] = int(row["shipping"])
        out["item_description"] = _text(row.get("item_description"), DESCRIPTION_CUT)
    return out


def reference_listings(pipeline: Any, fit_rows: pd.DataFrame) -> dict[str, Any]:
    """The profile section of reference listings for ``pipeline`` fitted on ``fit_rows`` (in order).

    A stack's kNN rows are found again by replaying its sampling and checked against the targets
    it kept; if they differ (the rows given are not the ones it was fitted on), the first rows are
    kept as a ``text`` index instead.
    """
    fit_rows = fit_rows.reset_index(drop=True)
    stack = _stack_of(pipeline.named_steps["model"].estimator_)
    if stack is not None:
        rows = _knn_rows(stack, len(fit_rows))
        prices = np.log1p(fit_rows[PRICE].to_numpy(dtype=np.float64)[rows]) if len(rows) else rows
        if len(rows) == len(stack.knn_targets_) and np.allclose(prices, stack.knn_targets_):
            positions = np.arange(len(rows))[:MAX_REFERENCE_ROWS]
            records = fit_rows.iloc[rows[positions]].to_dict("records")
            return {
                "source": "knn",
                "positions": positions.tolist(),
                "rows": [_record(r, full=False) for r in records],
            }
        log.warning("the stack's kNN rows do not match the fit rows given; keeping a text index instead")
    records = fit_rows.head(MAX_REFERENCE_ROWS).to_dict("records")
    return {"source": "text", "rows": [_record(r, full=True) for r in records]}


def text_vectors(X: Any, start: int) -> Any:
    """Row-normalised TF-IDF columns (from ``start``) of featurizer output: the stack kNN's own
    representation."""
    from sklearn.preprocessing import normalize

    return normalize(sp.csr_matrix(X)[:, start:], copy=True).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SimilarIndex:
    """Reference listings and their text vectors, searched by cosine similarity."""

    columns: Any  # CSR of the transposed vectors: one normalised column per reference listing
    rows: list[dict[str, Any]]
    source: str
    start: int  # the featurizer's first TF-IDF column

    def vectors(self, X: Any) -> Any:
        """The query vectors of featurizer output ``X``."""
        return text_vectors(X, self.start)

    @classmethod
    def build(cls, pipeline: Any, section: Any) -> SimilarIndex:
        """The index of a profile section; raises ValueError naming what is wrong with it."""
        if not isinstance(section, Mapping) or not isinstance(section.get("rows"), list):
            raise ValueError("the reference listings are not a mapping with a list of rows")
        rows = [_display(r) for r in section["rows"][:MAX_REFERENCE_ROWS]]
        source = section.get("source")
        start = text_start(pipeline.named_steps["features"])
        if source == "knn":
            stack = _stack_of(pipeline.named_steps["model"].estimator_)
            positions = np.asarray(section.get("positions", []), dtype=np.int64)
            if stack is None:
                raise ValueError("kNN reference listings, but the model holds no stack")
            if stack.n_codes + stack.n_numeric + stack.n_dense != start:
                raise ValueError("the stack's text columns do not start where the featurizer's TF-IDF does")
            reference = stack.knn_reference_
            inside = len(positions) == 0 or 0 <= positions.min() <= positions.max() < reference.shape[0]
            if len(positions) != len(rows) or not inside:
                raise ValueError("the kNN positions do not match the model's kNN reference rows")
            vectors = reference[positions]
        elif source == "text":
            frame = pd.DataFrame(
                [{c: r.get(c) for c in FEATURE_COLUMNS} for r in section["rows"][:MAX_REFERENCE_ROWS]],
                columns=list(FEATURE_COLUMNS),
            )
            frame = frame.astype({"item_condition_id": "int64", "shipping": "int64"})
            vectors = text_vectors(pipeline.named_steps["features"].transform(frame), start)
        else:
            raise ValueError(f"unknown reference listings source {source!r}")
        # Transposed once, as CSR: a product with a CSC operand would convert it on every call.
        return cls(sp.csr_matrix(sp.csr_matrix(vectors, dtype=np.float32).T), rows, str(source), start)

    def nearest(self, queries: Any, k: int = SIMILAR_COUNT) -> list[list[dict[str, Any]]]:
        """Per query row (normalised text vectors): the ``k`` most similar references, most similar first."""
        k = min(k, len(self.rows))
        sims = np.asarray((queries @ self.columns).todense(), dtype=np.float64)
        out = []
        for row in sims:
            top = np.argpartition(-row, k - 1)[:k] if k else np.array([], dtype=np.int64)
            top = top[np.lexsort((top, -row[top]))]  # most similar first, ties by position
            out.append([{**self.rows[j], "similarity": round(float(row[j]), 4)} for j in top])
        return out


def _display(row: Any) -> dict[str, Any]:
    """A stored reference listing's display fields, type-checked (the profile is plain JSON)."""
    if not isinstance(row, Mapping):
        raise ValueError("a reference listing is not a mapping")
    try:
        out: dict[str, Any] = {f: _text(row.get(f), cut) for f, cut in FIELD_CUTS.items()}
        out["item_condition_id"] = int(row["item_condition_id"])
        out["price"] = float(row["price"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a reference listing lacks a valid field: {exc}") from exc
    return out
