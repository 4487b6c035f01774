"""Estimators that travel inside the saved model (so serving needs this module, not training code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

# Types a saved Price Alchemy model may contain beyond skops' built-in sklearn/numpy/scipy allow-list.
# The model is saved in MLflow's skops format with exactly this list; anything else fails at save time.
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "price_alchemy.estimators.CodeEncoder",
    "price_alchemy.estimators.FrequentColumns",
    "price_alchemy.estimators.LogPriceRegressor",
    "price_alchemy.estimators.StackedRegressor",
    "price_alchemy.estimators.WeightedBlend",
    "price_alchemy.features.CategoryCodes",
    "price_alchemy.features.CompactTfidfVectorizer",
    "price_alchemy.features._scale",
    "price_alchemy.features._sparse_rows",
    "price_alchemy.features.clean_listings",
    "price_alchemy.mlp.SparseMLPRegressor",
    "price_alchemy.word_vectors.WordVectors",
)


class LogPriceRegressor(RegressorMixin, BaseEstimator):
    """Fits ``estimator`` on log1p(price) and predicts dollars (never below zero).

    Training on the log target is what makes squared error equal to the RMSLE we report, and it
    tames the long price tail.
    """

    def __init__(self, estimator: Any):
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> LogPriceRegressor:
        self.estimator_ = clone(self.estimator).fit(X, np.log1p(np.asarray(y, dtype=np.float64)))
        return self

    def predict_log(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.clip(np.asarray(self.estimator_.predict(X), dtype=np.float64), 0.0, None)

    def predict(self, X: Any) -> np.ndarray:
        return np.expm1(self.predict_log(X))


class FrequentColumns(TransformerMixin, BaseEstimator):
    """Keeps the ``max_columns`` sparse columns with the most non-zeros in training.

    Tree learners pay per column on every split search; rare n-grams rarely split anyway, so
    dropping them makes LightGBM several times faster on TF-IDF features at little cost.
    """

    def __init__(self, max_columns: int = 20_000):
        self.max_columns = max_columns

    def fit(self, X: Any, y: Any = None) -> FrequentColumns:
        counts = np.asarray((X != 0).sum(axis=0)).ravel()
        keep = np.argsort(-counts, kind="stable")[: self.max_columns]
        self.columns_ = np.sort(keep)
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "columns_")
        return X[:, self.columns_]


class WeightedBlend(RegressorMixin, BaseEstimator):
    """Weighted average of regressors' predictions (weights chosen on validation data)."""

    def __init__(self, estimators: Sequence[tuple[str, Any]], weights: Sequence[float]):
        self.estimators = estimators
        self.weights = weights

    def fit(self, X: Any, y: Any) -> WeightedBlend:
        if len(self.estimators) != len(self.weights):
            raise ValueError("WeightedBlend needs one weight per estimator")
        self.estimators_ = [clone(est).fit(X, y) for _, est in self.estimators]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        weights = np.asarray(self.weights, dtype=np.float64)
        stacked = np.column_stack([np.asarray(est.predict(X), dtype=np.float64) for est in self.estimators_])
        return stacked @ (weights / weights.sum())


class MedianPriceBaseline(RegressorMixin, BaseEstimator):
    """The rules baseline: median price of the most specific group with enough listings.

    Groups, most specific first: (category, brand, condition), (category, brand), (category),
    then the global median. Works on raw listing frames, in dollars.
    """

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("category_name", "brand_name", "item_condition_id"),
        ("category_name", "brand_name"),
        ("category_name",),
    )

    def __init__(self, min_count: int = 3):
        self.min_count = min_count

    @staticmethod
    def _keys(X: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
        parts = [X[c].astype("object").where(X[c].notna(), "<missing>").astype(str) for c in columns]
        key = parts[0]
        for part in parts[1:]:
            key = key + "\x1f" + part
        return key

    def fit(self, X: pd.DataFrame, y: Any) -> MedianPriceBaseline:
        prices = pd.Series(np.asarray(y, dtype=np.float64), index=X.index)
        self.global_median_ = float(prices.median())
        self.tables_: list[dict[str, float]] = []
        for columns in self.LEVELS:
            grouped = prices.groupby(self._keys(X, columns))
            stats = grouped.agg(["median", "size"])
            self.tables_.append(stats.loc[stats["size"] >= self.min_count, "median"].to_dict())
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        out = pd.Series(np.nan, index=X.index)
        for columns, table in zip(self.LEVELS, self.tables_, strict=True):
            todo = out.isna()
            if not todo.any():
                break
            out[todo] = self._keys(X.loc[todo], columns).map(table)
        return out.fillna(self.global_median_).to_numpy(dtype=np.float64)


def _target_tables(
    codes: np.ndarray, y: np.ndarray, smoothing: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per code column: smoothed mean of ``y`` per code (shrunk to the mean of y) and log1p(count).

    Code 0 (a value unseen by the featurizer) and codes absent from ``y``'s rows get the prior.
    """
    prior = float(y.mean())
    means, counts = [], []
    for j in range(codes.shape[1]):
        column = codes[:, j]
        size = int(column.max()) + 1
        total = np.bincount(column, weights=y, minlength=size)
        count = np.bincount(column, minlength=size).astype(np.float64)
        mean = (total + smoothing * prior) / (count + smoothing)
        mean[0], count[0] = prior, 0.0
        means.append(mean)
        counts.append(np.log1p(count))
    return means, counts


def _lookup(codes: np.ndarray, tables: list[np.ndarray], default: float) -> np.ndarray:
    out = np.full(codes.shape, default, dtype=np.float64)
    for j, table in enumerate(tables):
        known = codes[:, j] < len(table)
        out[known, j] = table[codes[known, j]]
    return out


def _codes(X: Any, n_codes: int) -> np.ndarray:
    """The leading category codes of featurizer output, as integers (0 = unseen)."""
    codes = np.rint(sp.csr_matrix(X)[:, :n_codes].toarray()).astype(np.int64)
    return np.clip(codes, 0, None)


def _split_codes(X: Any, n_codes: int) -> tuple[np.ndarray, Any]:
    """The codes and the other columns (a copy of them: call :func:`_codes` when only codes are needed)."""
    X = sp.csr_matrix(X)
    return _codes(X, n_codes), X[:, n_codes:]


class CodeEncoder(TransformerMixin, BaseEstimator):
    """The featurizer's leading category codes -> one-hot and out-of-fold target encodings.

    Input: the featurizer matrix, whose first ``n_codes`` columns are integer codes (0 = unseen).
    Output: the remaining columns, then one-hot of the codes seen in training, then per code column
    the smoothed mean log-price and log count, centred and scaled by ``target_weight``.

    ``fit_transform`` (what a Pipeline calls on training rows) encodes each row with statistics
    from the other folds, so a learner cannot memorise a listing's own price through a rare brand;
    ``transform`` uses statistics from all training rows.
    """

    def __init__(
        self,
        n_codes: int,
        one_hot: bool = True,
        target_weight: float = 1.0,
        smoothing: float = 10.0,
        n_folds: int = 5,
        seed: int = 42,
    ):
        self.n_codes = n_codes
        self.one_hot = one_hot
        self.target_weight = target_weight
        self.smoothing = smoothing
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, X: Any, y: Any) -> CodeEncoder:
        codes = _codes(X, self.n_codes)
        y = np.asarray(y, dtype=np.float64)
        self.prior_ = float(y.mean())
        self.sizes_ = (codes.max(axis=0) + 1).astype(np.int64)
        self.means_, self.counts_ = _target_tables(codes, y, self.smoothing)
        return self

    def _one_hot(self, codes: np.ndarray) -> Any:
        offsets = np.concatenate([[0], np.cumsum(self.sizes_)])
        rows, cols = [], []
        for j in range(codes.shape[1]):
            known = (codes[:, j] > 0) & (codes[:, j] < self.sizes_[j])
            rows.append(np.flatnonzero(known))
            cols.append(offsets[j] + codes[known, j])
        row = np.concatenate(rows)
        data = np.ones(len(row), dtype=np.float32)
        return sp.csr_matrix((data, (row, np.concatenate(cols))), shape=(len(codes), int(offsets[-1])))

    def _encode(self, codes: np.ndarray, rest: Any, means: np.ndarray, counts: np.ndarray) -> Any:
        blocks = [rest]
        if self.one_hot:
            blocks.append(self._one_hot(codes))
        if self.target_weight > 0:
            dense = np.hstack([means - self.prior_, counts / 5.0]) * self.target_weight
            blocks.append(sp.csr_matrix(dense.astype(np.float32)))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "means_")
        codes, rest = _split_codes(X, self.n_codes)
        return self._encode(
            codes, rest, _lookup(codes, self.means_, self.prior_), _lookup(codes, self.counts_, 0.0)
        )

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> Any:
        if y is None:
            raise ValueError("CodeEncoder needs the target to fit")
        self.fit(X, y)
        codes, rest = _split_codes(X, self.n_codes)
        return self._encode(codes, rest, *out_of_fold_targets(codes, np.asarray(y, dtype=np.float64), self))


def out_of_fold_targets(
    codes: np.ndarray, y: np.ndarray, encoder: CodeEncoder
) -> tuple[np.ndarray, np.ndarray]:
    """Target means and log counts of each row computed without its own fold."""
    means = np.empty(codes.shape, dtype=np.float64)
    counts = np.empty(codes.shape, dtype=np.float64)
    if len(y) < 2 * encoder.n_folds:  # too few rows to hold any out: use the prior
        means[:] = encoder.prior_
        counts[:] = 0.0
        return means, counts
    for train, held in KFold(encoder.n_folds, shuffle=True, random_state=encoder.seed).split(codes):
        fold_means, fold_counts = _target_tables(codes[train], y[train], encoder.smoothing)
        prior = float(y[train].mean())
        means[held] = _lookup(codes[held], fold_means, prior) - prior + encoder.prior_
        counts[held] = _lookup(codes[held], fold_counts, 0.0)
    return means, counts


_SMALL_META_ROWS = 20_000
#: Threads of the kNN search (sparse_dot_topn). Its threaded kernel is faster even on one core
#: (benchmarks/knn_search.py: 2.5x the brute force on one core, 5x on two), so it is always used.
KNN_THREADS = 2


#: A column held by at most this many kNN references is always searched, whatever ``knn_max_df``:
#: on a small reference (or a tiny ``knn_max_df``) the share alone would leave every column out.
KNN_MIN_HELD = 10


def searched_columns(reference: Any, max_df: float) -> np.ndarray | None:
    """Mask of the columns the kNN searches (None: every column).

    A column is searched when at most ``max_df`` of the reference rows, or at most
    :data:`KNN_MIN_HELD` of them, hold it.
    """
    if max_df >= 1.0:
        return None
    held_by = np.bincount(reference.indices, minlength=reference.shape[1])
    return held_by <= max(max_df * reference.shape[0], KNN_MIN_HELD)


def keep_columns(matrix: Any, columns: np.ndarray) -> Any:
    """``matrix`` (CSR) with the entries outside the ``columns`` mask removed; same shape."""
    keep = columns[matrix.indices]
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=matrix.shape[0]))])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class StackedRegressor(RegressorMixin, BaseEstimator):
    """A Ridge averaged with LightGBM over diverse first-level signals (stacking, out-of-fold).

    Meta features: a Ridge (one-hot + target encodings + text), a cosine kNN on the weighted text,
    its top similarity, target encodings and counts of each category code, the dense numeric
    columns, and a truncated SVD of the text. Ridge prices words additively; the trees can then
    correct it where it is systematically off (a brand in a category, a condition, an unusual
    neighbourhood), which is where a linear model on 5k-1.5M listings leaves most error. The
    prediction is ``trees_weight_ * trees + (1 - trees_weight_) * ridge``, the share chosen on
    out-of-fold predictions of the training rows.

    Scaling: first-level predictions are made out-of-fold for at most ``max_meta_rows`` rows (so
    the Ridge is fitted ``n_folds + 1`` times on the data, linear in rows), the kNN searches at
    most ``knn_max_reference`` training rows (so it stays linear in the rows queried), and the
    trees see only the meta rows.

    The kNN's similarity leaves out the text columns found in more than ``knn_max_df`` of its
    references (1.0: none left out). A search costs one multiply-add per (query column, reference
    holding it), so the few very common columns (words like "and", the name's frequent character
    n-grams) are nearly all of its cost while saying least about which listings are alike; the
    similarity is then the part of the cosine carried by the distinctive columns.
    """

    #: Models saved before the parameter existed lack the attribute; they searched every column.
    knn_max_df: float = 1.0
    #: Likewise: models saved before the word-vector blocks had none.
    n_dense: int = 0

    def __init__(
        self,
        n_codes: int,
        n_numeric: int,
        alpha: float = 6.0,
        n_neighbors: int = 10,
        learning_rate: float = 0.02,
        n_estimators: int = 500,
        num_leaves: int = 8,
        min_child_samples: int = 30,
        colsample_bytree: float = 0.7,
        svd_components: int = 30,
        n_folds: int = 5,
        max_meta_rows: int = 50_000,
        knn_max_reference: int = 10_000,
        knn_max_df: float = 1.0,
        n_dense: int = 0,
        seed: int = 42,
        n_jobs: int = 2,
    ):
        self.n_codes = n_codes
        self.n_numeric = n_numeric
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.svd_components = svd_components
        self.n_folds = n_folds
        self.max_meta_rows = max_meta_rows
        self.knn_max_reference = knn_max_reference
        self.knn_max_df = knn_max_df
        self.n_dense = n_dense
        self.seed = seed
        self.n_jobs = n_jobs

    def _base(self) -> Any:
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline

        ridge = Ridge(alpha=self.alpha, solver="sparse_cg", tol=1e-4, random_state=self.seed)
        return Pipeline([("codes", CodeEncoder(self.n_codes, seed=self.seed)), ("ridge", ridge)])

    def _text(self, X: Any) -> Any:
        """The row-normalised TF-IDF columns: what the kNN searches."""
        from sklearn.preprocessing import normalize

        start = self.n_codes + self.n_numeric + self.n_dense
        # A column slice of a CSR matrix is a new matrix: normalised in place, the caller's X is untouched.
        return normalize(sp.csr_matrix(X)[:, start:], copy=False).astype(np.float32, copy=False)

    def _svd_input(self, X: Any, text: Any) -> Any:
        """What the SVD reduces: the TF-IDF with the ``n_dense`` word-vector columns before it."""
        from sklearn.preprocessing import normalize

        if not self.n_dense:
            return text
        tail = sp.csr_matrix(X)[:, self.n_codes + self.n_numeric :]
        return normalize(tail, copy=False).astype(np.float32, copy=False)

    @property
    def knn_reference_(self) -> Any:
        """The (row-normalised) text of the training rows the kNN searches."""
        data, indices, indptr, shape = self.knn_parts_
        return sp.csr_matrix((data, indices, indptr), shape=tuple(int(d) for d in shape))

    def _search_reference(self) -> Any:
        """:attr:`knn_reference_` without the columns the search leaves out (see the class doc).

        Models saved before ``knn_columns_`` existed search every column.
        """
        reference = self.knn_reference_
        searched = getattr(self, "knn_columns_", None)
        return reference if searched is None else keep_columns(reference, searched)

    def _search_columns(self) -> Any:
        """The transpose of :meth:`_search_reference` (CSR, float32), built once per loaded model.

        Rebuilding it cost more than a one-listing search itself. The cache remembers which arrays
        it was built from (a new fit or mask rebuilds it) and is never saved with the model
        (:meth:`__getstate__`).
        """
        sources = (self.knn_parts_[0], getattr(self, "knn_columns_", None))
        cached = self.__dict__.get("_search_cache")
        if cached is None or cached[0] is not sources[0] or cached[1] is not sources[1]:
            transposed = self._search_reference().T.tocsr().astype(np.float32, copy=False)
            cached = (*sources, transposed)
            self.__dict__["_search_cache"] = cached
        return cached[2]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_search_cache", None)
        return state

    def _neighbours(self, queries: Any, exclude: np.ndarray | None = None) -> np.ndarray:
        """Similarity-weighted mean log price of the nearest references, and the top similarity.

        An exact search (up to ties in similarity): sparse_dot_topn multiplies the queries by the
        references and keeps each row's ``k`` largest products in C++, where the brute force
        (:meth:`_neighbours_brute`) densifies every similarity; rows that share a word with fewer
        than ``k`` references (rare) get the brute force. ``exclude[i]`` is the reference position
        of query ``i`` (or -1): a training row must not find itself.
        """
        from sparse_dot_topn import sp_matmul_topn

        columns, targets = self._search_columns(), self.knn_targets_
        k = self._k(columns.shape[1], exclude)
        extra = 0 if exclude is None else 1
        found = sp_matmul_topn(
            sp.csr_matrix(queries, dtype=np.float32),
            columns,
            top_n=k + extra,
            sort=True,
            n_threads=KNN_THREADS,
        )
        per_row = np.diff(found.indptr)
        row = np.repeat(np.arange(found.shape[0]), per_row)
        keep = np.ones(len(row), dtype=bool)
        if exclude is not None:
            keep = found.indices != exclude[row]
        rank = np.cumsum(keep) - 1  # rank of each kept entry within its row (rows sorted, descending)
        start = np.concatenate([[0], np.cumsum(keep)])[found.indptr[:-1]]
        keep &= rank - start[row] < k
        kept = np.bincount(row[keep], minlength=found.shape[0])
        sims, row = found.data[keep], row[keep]
        weights = np.clip(sims, 1e-6, None).astype(np.float64) ** 2
        out = np.empty((found.shape[0], 2), dtype=np.float64)
        weighted = np.bincount(row, weights * targets[found.indices[keep]], found.shape[0])
        with np.errstate(invalid="ignore", divide="ignore"):  # rows with nothing kept: redone below
            out[:, 0] = weighted / np.bincount(row, weights, found.shape[0])
        out[:, 1] = 0.0
        np.maximum.at(out[:, 1], row, sims)
        short = np.flatnonzero(kept < k)
        if len(short):
            out[short] = self._neighbours_brute(queries[short], None if exclude is None else exclude[short])
        return out

    def _k(self, n_reference: int, exclude: np.ndarray | None) -> int:
        return max(1, min(self.n_neighbors, n_reference - (1 if exclude is not None else 0)))

    def _neighbours_brute(self, queries: Any, exclude: np.ndarray | None = None) -> np.ndarray:
        """:meth:`_neighbours` by brute force: every similarity, densified, then the ``k`` largest."""
        columns, targets = self._search_columns(), self.knn_targets_
        k = self._k(columns.shape[1], exclude)
        out = np.empty((queries.shape[0], 2), dtype=np.float64)
        for part in _chunks(queries.shape[0], 1024):
            sims = np.asarray((queries[part] @ columns).todense(), dtype=np.float32)
            if exclude is not None:  # a training row must not find itself
                rows = np.flatnonzero(exclude[part] >= 0)
                sims[rows, exclude[part][rows]] = -np.inf
            idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(sims, idx, axis=1)
            weights = np.clip(top, 1e-6, None).astype(np.float64) ** 2
            out[part, 0] = (weights * targets[idx]).sum(axis=1) / weights.sum(axis=1)
            out[part, 1] = top.max(axis=1)
        return out

    def _meta(
        self, ridge: np.ndarray, knn: np.ndarray, means: np.ndarray, counts: np.ndarray, X: Any, text: Any
    ) -> np.ndarray:
        numeric = X[:, self.n_codes : self.n_codes + self.n_numeric].toarray()
        blocks = [ridge[:, None], knn, means, counts, numeric]
        if self.svd_ is not None:
            blocks.append(self.svd_.transform(self._svd_input(X, text)))
        return np.hstack(blocks).astype(np.float32)

    def fit(self, X: Any, y: Any) -> StackedRegressor:
        from lightgbm import LGBMRegressor
        from sklearn.decomposition import TruncatedSVD

        X = sp.csr_matrix(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        n = X.shape[0]
        rng = np.random.default_rng(self.seed)
        meta = (
            np.arange(n)
            if n <= self.max_meta_rows
            else np.sort(rng.choice(n, self.max_meta_rows, replace=False))
        )
        codes = _codes(X, self.n_codes)
        prior = float(y.mean())

        ridge_oof = np.empty(len(meta))
        means = np.empty((len(meta), self.n_codes))
        counts = np.empty((len(meta), self.n_codes))
        n_splits = max(2, min(self.n_folds, len(meta)))
        for _, held_pos in KFold(n_splits, shuffle=True, random_state=self.seed).split(meta):
            held = meta[held_pos]
            rest = np.ones(n, dtype=bool)
            rest[held] = False
            ridge_oof[held_pos] = clone(self._base()).fit(X[rest], y[rest]).predict(X[held])
            fold_means, fold_counts = _target_tables(codes[rest], y[rest], 10.0)
            means[held_pos] = _lookup(codes[held], fold_means, float(y[rest].mean()))
            counts[held_pos] = _lookup(codes[held], fold_counts, 0.0)
        self.base_ = self._base().fit(X, y)
        self.means_, self.counts_ = _target_tables(codes, y, 10.0)
        self.prior_ = prior

        text = self._text(X)
        reference = (
            np.arange(n)
            if n <= self.knn_max_reference
            else np.sort(rng.choice(n, self.knn_max_reference, replace=False))
        )
        references = sp.csr_matrix(text[reference])
        # Kept as plain arrays: skops trusts numpy arrays but not a scipy sparse matrix.
        self.knn_parts_ = (
            references.data,
            references.indices,
            references.indptr,
            np.asarray(references.shape),
        )
        self.knn_targets_ = y[reference]
        self.knn_columns_ = searched_columns(references, self.knn_max_df)
        position = np.full(n, -1, dtype=np.int64)
        position[reference] = np.arange(len(reference))
        knn = self._neighbours(text[meta], exclude=position[meta])

        reduced = self._svd_input(X[meta], text[meta])
        components = min(self.svd_components, reduced.shape[1] - 1, len(meta) - 1)
        self.svd_ = TruncatedSVD(components, random_state=self.seed).fit(reduced) if components >= 1 else None
        features = self._meta(ridge_oof, knn, means, counts, X[meta], text[meta])
        trees = LGBMRegressor(
            learning_rate=self.learning_rate,
            n_estimators=self.n_estimators,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            colsample_bytree=self.colsample_bytree,
            subsample=0.8,
            subsample_freq=1,
            random_state=self.seed,
            # On a few thousand rows OpenMP start-up and spinning cost more than a second thread
            # saves, and make fits erratic on a busy machine.
            n_jobs=self.n_jobs if len(meta) >= _SMALL_META_ROWS else 1,
            verbose=-1,
        )
        # The trees alone are noisier than the Ridge they start from; averaging the two is better
        # than either. The share is chosen on out-of-fold predictions of all meta rows, far more
        # rows than a validation split has (3 folds: it is one number, not worth more tree fits).
        trees_oof = np.empty(len(meta))
        for train_pos, held_pos in KFold(3, shuffle=True, random_state=self.seed + 1).split(meta):
            trees_oof[held_pos] = (
                clone(trees).fit(features[train_pos], y[meta][train_pos]).predict(features[held_pos])
            )
        grid = np.linspace(0.0, 1.0, 21)
        losses = [np.mean((y[meta] - (w * trees_oof + (1.0 - w) * ridge_oof)) ** 2) for w in grid]
        self.trees_weight_ = float(grid[int(np.argmin(losses))])
        self.meta_ = trees.fit(features, y[meta])
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "meta_")
        X = sp.csr_matrix(X, dtype=np.float32)
        codes = _codes(X, self.n_codes)
        ridge = np.asarray(self.base_.predict(X), dtype=np.float64)
        text = self._text(X)
        features = self._meta(
            ridge,
            self._neighbours(text),
            _lookup(codes, self.means_, self.prior_),
            _lookup(codes, self.counts_, 0.0),
            X,
            text,
        )
        trees = np.asarray(self.meta_.predict(features), dtype=np.float64)
        return self.trees_weight_ * trees + (1.0 - self.trees_weight_) * ridge
