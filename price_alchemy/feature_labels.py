"""Readable names of the featurizer's columns for one listing, for :mod:`price_alchemy.explain`.

The featurizer's layout (:mod:`price_alchemy.features`): category codes, numeric signals, then
TF-IDF blocks. A column is named by the listing's own value: a code column by its field
(``brand: Nike``; the three category levels all ``category: <path>``), a numeric one by what it
counts, a word column by its term (``name: "iphone"`` when the name has it, else ``text: "..."``),
a name's character n-gram by the words of the name it comes from (shared when in several). A
word column the listing lacks (which only trees use) is ``... words it lacks``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from price_alchemy.estimators import CodeEncoder
from price_alchemy.features import CODE_COLUMNS, MEANING_BLOCKS, NUMERIC
from price_alchemy.names import MISSING

_WORD = re.compile(r"(?u)\b\w+\b")
_CUT = 60  # characters of a field value shown in a label
MEANING_LABELS = {
    "title_meaning": "name, brand and category: what the words mean",
    "description_meaning": "description: what the words mean",
}


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _cut(value: str) -> str:
    return value if len(value) <= _CUT else value[: _CUT - 1] + "…"


@dataclass(frozen=True)
class _Block:
    """One TF-IDF block of the featurizer: its columns, vocabulary and analyzer."""

    name: str
    start: int
    stop: int
    vectorizer: Any
    field: str  # the cleaned column it reads


class FeatureLayout:
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
        # Featurizers saved before the word-vector blocks existed have none.
        self.meaning = [(slices[n], MEANING_LABELS[n]) for n in MEANING_BLOCKS if n in slices]
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
        self.preprocessors = {b.name: b.vectorizer.build_preprocessor() for b in self.blocks}
        self.terms = {b.name: _terms(b.vectorizer.vocabulary_) for b in self.blocks}
        self._sources: dict[int, np.ndarray] = {}

    def encoded_sources(self, encoder: CodeEncoder, columns: np.ndarray) -> np.ndarray:
        """The featurizer column behind each :class:`CodeEncoder` output column (for an encoding of
        a code column: that code column)."""
        tail = self._sources.get(id(encoder))
        if tail is None:  # one-hot blocks, then target means and log counts, per code column
            codes = np.arange(encoder.n_codes)
            parts = [np.repeat(codes, encoder.sizes_)] if encoder.one_hot else []
            parts += [codes, codes] if encoder.target_weight > 0 else []
            tail = self._sources[id(encoder)] = np.concatenate(parts) if parts else codes[:0]
        rest = self.width - encoder.n_codes
        columns = np.asarray(columns, dtype=np.int64)
        return np.where(
            columns < rest, encoder.n_codes + columns, tail[np.maximum(columns - rest, 0) % max(len(tail), 1)]
        )


def _terms(vocabulary: Mapping[str, int]) -> np.ndarray:
    terms = np.empty(len(vocabulary), dtype=object)
    for term, column in vocabulary.items():
        terms[column] = term
    return terms


class RowLabels:
    """The readable label(s) of every featurizer column for one listing (``nonzero``: its columns)."""

    def __init__(
        self,
        layout: FeatureLayout,
        listing: Mapping[str, Any],
        cleaned: Mapping[str, Any],
        nonzero: np.ndarray,
    ) -> None:
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
        name = str(cleaned["name"])
        for block in layout.blocks:
            if block.name == "name_chars":
                self._chars(block, name)
                self.absent[block.name] = "name: letter groups it lacks"
                continue
            # A text word that is also in the name is a name word (the name's own analysis).
            in_name = block.field == "name" or None
            name_terms = set() if in_name else set(layout.analyzers[block.name](name))
            terms = layout.terms[block.name]
            columns = nonzero[(nonzero >= block.start) & (nonzero < block.stop)]
            for column in columns.tolist():
                term = terms[column - block.start]
                field = "name" if in_name or term in name_terms else "text"
                self.present[column] = [(f'{field}: "{_cut(term)}"', 1.0)]
            self.absent[block.name] = ("name" if block.field == "name" else "text") + ": words it lacks"

    def _chars(self, block: _Block, name: str) -> None:
        """Each character n-gram's effect shared among the name's words that contain it."""
        analyze = self.layout.analyzers[block.name]
        vocabulary = block.vectorizer.vocabulary_
        owners: dict[int, dict[str, int]] = {}
        for word in self.layout.preprocessors[block.name](name).split():
            label = f'name: "{_cut(" ".join(_WORD.findall(word)) or word)}"'
            for gram in analyze(word):
                column = vocabulary.get(gram)
                if column is not None:
                    counts = owners.setdefault(block.start + column, {})
                    counts[label] = counts.get(label, 0) + 1
        for column, counts in owners.items():
            if len(counts) == 1:
                self.present[column] = [(next(iter(counts)), 1.0)]
            else:
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
        for part, label in layout.meaning:
            if part.start <= column < part.stop:
                return [(label, 1.0)]
        block = next(b for b in layout.blocks if b.start <= column < b.stop)
        return [(self.absent[block.name], 1.0)]
