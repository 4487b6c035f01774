"""What a listing's words mean: pretrained word-piece vectors, read as plain numbers.

A few thousand listings cannot teach a model that "iphone" and "galaxy" are both phones, or that
"lululemon" is a clothing brand; an encoder pretrained on a large corpus knows it. The package
ships such knowledge as a table (``resources/word_vectors.npz``): one vector per WordPiece token of
all-MiniLM-L6-v2, distilled from the encoder by ``scripts/build_word_vectors.py``. Only numbers are
read (``allow_pickle=False``); neither PyTorch nor the encoder is needed.

:class:`WordVectors` turns a text into the IDF-weighted mean of its word pieces' vectors,
L2-normalised: words are the featurizer's (``\\w+``, lower-cased), each split into word pieces the
way the encoder's own tokenizer does (accents stripped, the longest piece of the vocabulary first,
``##`` marking a continuation), a text being its first :data:`MAX_PIECES` pieces. The IDF is
fitted on the training texts. The product is one sparse (texts x pieces) by dense (pieces x dims)
multiplication; the word splitting is plain Python, each word's pieces remembered. On the sample
the two blocks add about a third to the featurizer's time (``docs/batch-scoring.md``); the
bounds (a word over 100 characters has no pieces, at most 512 words and 256 pieces per text, at
most 18 characters per match tried) keep a text of long made-up words from costing more than a
few milliseconds.

Words are the featurizer's ``\\w+`` runs, so punctuation tokens are dropped, and text in
decomposed Unicode form or in scripts with combining marks (Devanagari, Thai) is cut at the marks
where the encoder's tokenizer would keep the word whole.

A fitted :class:`WordVectors` records the table's digest; a model is refused when the installed
table differs from the one it was trained with (:func:`check_word_vectors`, which
:mod:`price_alchemy.model_files` runs on every load; ``transform`` checks it too).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger(__name__)

#: Dimensions of the packaged table (the featurizer's layout depends on it: two blocks of this width).
DIMS = 128
_WORD = re.compile(r"(?u)\b\w+\b")
_MAX_WORD = 100  # characters: a longer "word" is no word (the encoder's tokenizer: [UNK])
#: A text is its first MAX_PIECES word pieces (the encoder's input length the table was weighed
#: with), found among its first MAX_WORDS words: the work per text is bounded whatever its length.
MAX_PIECES = 256
MAX_WORDS = 512
#: Words whose pieces are remembered per block (then forgotten all at once); at most _MAX_WORD
#: characters each, so a few tens of MB at worst.
_CACHE_WORDS = 200_000


@dataclass(frozen=True)
class Table:
    """The packaged token vectors and where they came from."""

    ids: dict[str, int]  # word piece -> row
    vectors: np.ndarray  # float32, (pieces, DIMS)
    source: dict[str, Any]
    digest: str  # sha256 of the file's bytes
    longest: int  # characters of the longest piece (without its "##"): no longer match is tried


def _resource() -> Any:
    return resources.files("price_alchemy") / "resources" / "word_vectors.npz"


@cache
def table() -> Table:
    """The packaged table, read once per process."""
    raw = _resource().read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        blob, ends = data["token_bytes"].tobytes(), data["token_ends"].tolist()
        vectors = data["vectors"].astype(np.float32)
        source = json.loads(data["source"].tobytes().decode("utf-8"))
    tokens = [blob[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    if vectors.shape != (len(tokens), DIMS):
        raise ValueError(f"word_vectors.npz: vectors {vectors.shape}, expected ({len(tokens)}, {DIMS})")
    longest = max(len(t.removeprefix("##")) for t in tokens)
    ids = {t: i for i, t in enumerate(tokens)}
    return Table(ids, vectors, source, hashlib.sha256(raw).hexdigest(), longest)


#: The code point ranges the encoder's tokenizer treats as CJK characters (each its own word).
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK)


def _basic_parts(word: str) -> list[str]:
    """The encoder's basic tokenization of one ``\\w+`` word: lower-cased, accents stripped, split at
    underscores (punctuation to it) and around CJK characters (each its own word)."""
    text = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
    parts: list[str] = []
    current: list[str] = []
    for char in text:
        if char == "_" or _is_cjk(char):
            if current:
                parts.append("".join(current))
                current = []
            if char != "_":
                parts.append(char)
        else:
            current.append(char)
    if current:
        parts.append("".join(current))
    return parts


def word_pieces(word: str, packaged: Table) -> tuple[int, ...]:
    """Rows of ``word``'s pieces: the longest vocabulary prefix first, then ``##`` continuations.

    A part that cannot be split into vocabulary pieces has none (the encoder's [UNK], a zero row).
    A word over :data:`_MAX_WORD` characters has none either (the encoder's limit, applied here to
    the whole ``\\w+`` word, underscores included). Matches are tried from at most
    ``packaged.longest`` characters down, so a word costs at most ``len(word) x longest`` lookups.
    """
    if len(word) > _MAX_WORD:
        return ()
    ids, longest = packaged.ids, packaged.longest
    out: list[int] = []
    for part in _basic_parts(word):
        found: list[int] = []
        start = 0
        while start < len(part):
            end = min(len(part), start + longest)
            while end > start:
                piece = part[start:end] if start == 0 else "##" + part[start:end]
                row = ids.get(piece)
                if row is not None:
                    found.append(row)
                    break
                end -= 1
            if end == start:  # no piece fits: the whole part is unknown
                found = []
                break
            start = end
        out.extend(found)
    return tuple(out)


class WordVectors(TransformerMixin, BaseEstimator):
    """Texts (the space-joined ``columns`` of a frame) -> IDF-weighted mean piece vectors, L2-normed.

    ``weight`` scales the block (its share of the Ridge penalty, as for the TF-IDF blocks); 0 turns
    it off (an empty block of the same width, nothing computed). Fitted on more than ``max_rows``
    texts it is off too (``active_`` False): the dense block multiplies the featurizer's output
    several times over, which a full-size training could not hold in memory
    (``docs/model-selection.md``).
    """

    def __init__(self, weight: float = 1.0, max_rows: int | None = None):
        self.weight = weight
        self.max_rows = max_rows

    def _texts(self, X: Any) -> list[str]:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        columns = [frame[c].astype(str).tolist() for c in frame.columns]
        return [" ".join(values) for values in zip(*columns, strict=True)]

    def _counts(self, texts: list[str], n_pieces: int) -> sp.csr_matrix:
        """(texts x pieces) occurrence counts of each text's first :data:`MAX_PIECES` pieces."""
        pieces = self._pieces()
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            start = len(indices)
            for word in _WORD.findall(text)[:MAX_WORDS]:
                found = pieces.get(word)
                if found is None:
                    found = self._remember(word)
                indices.extend(found)
                if len(indices) - start >= MAX_PIECES:
                    del indices[start + MAX_PIECES :]
                    break
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)
        counts = sp.csr_matrix(
            (data, np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
            shape=(len(texts), n_pieces),
        )
        counts.sum_duplicates()
        return counts

    def _pieces(self) -> dict[str, tuple[int, ...]]:
        cached = self.__dict__.get("_piece_cache")
        if cached is None:
            cached = self.__dict__["_piece_cache"] = {}
        return cached

    def _remember(self, word: str) -> tuple[int, ...]:
        pieces = self._pieces()
        if len(pieces) >= _CACHE_WORDS:  # bounded: a stream of new words cannot grow it forever
            pieces.clear()
        found = word_pieces(word, table())
        if len(word) <= _MAX_WORD:  # longer ones have no pieces, and would only fill the cache
            pieces[word] = found
        return found

    def fit(self, X: Any, y: Any = None) -> WordVectors:
        packaged = table()
        self.digest_ = packaged.digest
        self.n_features_out_ = DIMS
        self.active_ = self.weight != 0 and (self.max_rows is None or len(X) <= self.max_rows)
        if not self.active_:
            if self.weight != 0:
                log.warning(
                    "word vectors off: %d training rows > features.meaning_max_rows (%d)",
                    len(X),
                    self.max_rows,
                )
            self.idf_ = np.zeros(0, dtype=np.float32)
            return self
        counts = self._counts(self._texts(X), len(packaged.ids))
        held_by = np.bincount(counts.indices, minlength=counts.shape[1])
        n = counts.shape[0]
        self.idf_ = (np.log((1.0 + n) / (1.0 + held_by)) + 1.0).astype(np.float32)
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        check_is_fitted(self, "digest_")
        n = len(X)
        if not self.active_:
            return sp.csr_matrix((n, DIMS), dtype=np.float32)
        packaged = self.check_table()
        weighted = self._counts(self._texts(X), len(packaged.ids))
        weighted.data *= self.idf_[weighted.indices]
        block = np.asarray(weighted @ packaged.vectors, dtype=np.float32)
        norms = np.linalg.norm(block, axis=1)
        filled = norms > 0  # a text without words has no entries (not explicit zeros)
        block = block[filled] * (np.float32(self.weight) / norms[filled, None])
        # Built straight from the dense rows: scipy's dense -> CSR conversion scans every cell.
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(filled * DIMS, out=indptr[1:])
        indices = np.tile(np.arange(DIMS, dtype=np.int32), len(block))
        return sp.csr_matrix((block.ravel(), indices, indptr), shape=(n, DIMS))

    def check_table(self) -> Table:
        """The installed table, if it is the one this was fitted with; else ValueError."""
        packaged = table()
        if packaged.digest != self.digest_:
            raise ValueError(
                "trained with other word vectors than the installed package's "
                f"(sha256 {self.digest_[:12]}, installed {packaged.digest[:12]}): install the "
                "price-alchemy version it was trained with, or train it again"
            )
        return packaged

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"meaning_{i}" for i in range(DIMS)], dtype=object)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_piece_cache", None)
        return state


def check_word_vectors(pipeline: Any) -> None:
    """ValueError when a fitted pipeline's word-vector blocks were fitted with another table than
    the installed one (blocks turned off, ``active_`` False, do not read it and pass)."""
    features = getattr(pipeline, "named_steps", {}).get("features")
    vectorize = getattr(features, "named_steps", {}).get("vectorize")
    for step in getattr(vectorize, "named_transformers_", {}).values():
        if isinstance(step, WordVectors) and step.active_:
            step.check_table()
