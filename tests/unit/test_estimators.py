"""Estimators that travel inside the saved model: target encodings, the stack, and saving them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import skops.io as sio
from sklearn.preprocessing import normalize

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.estimators import (
    KNN_MIN_HELD,
    TRUSTED_TYPES,
    CodeEncoder,
    LogPriceRegressor,
    StackedRegressor,
    WeightedBlend,
    keep_columns,
    searched_columns,
)
from price_alchemy.features import (
    CODE_COLUMNS,
    MEANING_COLUMNS,
    NUMERIC,
    build_featurizer,
    build_pipeline,
    text_start,
)
from price_alchemy.params import FeatureParams
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.training.families import make_estimator

pytestmark = pytest.mark.unit

FEATURES = list(FEATURE_COLUMNS)
SMALL_STACK = {
    "family": "stack",
    "alpha": 6.0,
    "n_neighbors": 5,
    "learning_rate": 0.05,
    "n_estimators": 60,
    "num_leaves": 4,
    "min_child_samples": 10,
    "svd_components": 5,
    "n_folds": 3,
    "max_meta_rows": 100_000,
    "knn_max_reference": 20_000,
    "knn_max_df": 0.3,  # the saved model then holds the searched-columns mask too
}


def _codes_matrix(codes: list[list[int]], extra: int = 2) -> sp.csr_matrix:
    """A featurizer-shaped matrix: code columns first, then ``extra`` constant columns."""
    dense = np.hstack([np.asarray(codes, dtype=np.float32), np.ones((len(codes), extra), dtype=np.float32)])
    return sp.csr_matrix(dense)


def test_code_encoder_one_hot_ignores_codes_unseen_in_training() -> None:
    X = _codes_matrix([[1], [2], [2], [1]])
    encoder = CodeEncoder(1, target_weight=0.0).fit(X, np.zeros(4))
    # 2 passthrough columns + one-hot over codes 0..2 (code 0 never gets a 1)
    out = encoder.transform(_codes_matrix([[2], [0], [7]])).toarray()
    assert out.shape == (3, 2 + 3)
    np.testing.assert_array_equal(out[:, 2:], [[0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_code_encoder_target_means_are_smoothed_and_unseen_codes_get_the_prior() -> None:
    X = _codes_matrix([[1]] * 10 + [[2]] * 10, extra=0)
    y = np.array([1.0] * 10 + [3.0] * 10)
    encoder = CodeEncoder(1, one_hot=False, target_weight=1.0, smoothing=10.0).fit(X, y)
    out = encoder.transform(_codes_matrix([[1], [2], [0], [9]], extra=0)).toarray()
    prior = 2.0
    # (10 * 1 + 10 * 2) / 20 = 1.5 for code 1, 2.5 for code 2; centred on the prior
    np.testing.assert_allclose(out[:, 0], [1.5 - prior, 2.5 - prior, 0.0, 0.0])
    np.testing.assert_allclose(out[:2, 1], np.log1p(10) / 5.0)


def test_code_encoder_fit_transform_is_out_of_fold() -> None:
    """A code seen once must not leak its own price into its training encoding."""
    X = _codes_matrix([[i + 1] for i in range(50)], extra=0)  # every row its own category
    y = np.linspace(0.0, 5.0, 50)
    encoder = CodeEncoder(1, one_hot=False, target_weight=1.0, smoothing=1.0)
    oof = encoder.fit_transform(X, y).toarray()[:, 0]
    full = encoder.transform(X).toarray()[:, 0]
    assert np.allclose(oof, 0.0, atol=0.2)  # held-out singletons fall back to (about) the prior
    assert np.corrcoef(full, y)[0, 1] > 0.99  # with its own row, the encoding tracks the price


@pytest.fixture(scope="module")
def featurized() -> tuple[sp.csr_matrix, np.ndarray, object]:
    listings = generate_listings(600, seed=5)
    listings = listings[listings["price"] > 0].reset_index(drop=True)
    featurizer = build_featurizer(FeatureParams())
    X = featurizer.fit_transform(listings[FEATURES])
    return X, np.log1p(listings["price"].to_numpy()), featurizer


def test_stack_is_deterministic_and_finite(featurized: tuple[sp.csr_matrix, np.ndarray, object]) -> None:
    X, y, _ = featurized
    first = make_estimator(SMALL_STACK).fit(X, y).predict(X[:50])
    second = make_estimator(SMALL_STACK).fit(X, y).predict(X[:50])
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, second)
    assert np.std(first) > 0.1  # it learned something, not a constant


def test_stack_caps_keep_the_knn_and_the_trees_small(
    featurized: tuple[sp.csr_matrix, np.ndarray, object],
) -> None:
    X, y, _ = featurized
    capped = StackedRegressor(
        len(CODE_COLUMNS), len(NUMERIC), n_estimators=30, n_folds=2, max_meta_rows=200, knn_max_reference=150
    ).fit(X, y)
    assert capped.knn_reference_.shape[0] == 150
    assert capped.meta_.n_features_in_ == 1 + 2 + 2 * len(CODE_COLUMNS) + len(NUMERIC) + 30
    assert 0.0 <= capped.trees_weight_ <= 1.0
    pred = capped.predict(X[:1])
    assert pred.shape == (1,) and np.isfinite(pred[0])


def _stack_with_reference(reference: sp.csr_matrix, targets: np.ndarray, k: int) -> StackedRegressor:
    stack = StackedRegressor(0, 0, n_neighbors=k)
    stack.knn_parts_ = (reference.data, reference.indices, reference.indptr, np.asarray(reference.shape))
    stack.knn_targets_ = targets
    return stack


@pytest.mark.parametrize("k", [1, 7, 30])
def test_the_knn_search_finds_exactly_the_neighbours_the_brute_force_finds(k: int) -> None:
    rng = np.random.default_rng(k)
    # Random weights on a small vocabulary: every row overlaps many others, and no two similarities tie.
    reference = normalize(sp.random(400, 60, density=0.15, random_state=1, dtype=np.float32, format="csr"))
    queries = normalize(sp.random(300, 60, density=0.15, random_state=2, dtype=np.float32, format="csr"))
    stack = _stack_with_reference(sp.csr_matrix(reference), rng.normal(3.0, 1.0, 400), k)

    fast, brute = stack._neighbours(queries), stack._neighbours_brute(queries)
    np.testing.assert_allclose(fast, brute, rtol=1e-5, atol=1e-6)
    # ... and found by the fast search itself: every row overlaps at least k references here, so
    # none may fall back to the brute force (which would hide a broken fast path, and its speed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack, "_neighbours_brute", lambda *a: pytest.fail("fell back to brute force"))
        np.testing.assert_allclose(stack._neighbours(queries), brute, rtol=1e-5, atol=1e-6)
        own = np.arange(400)
        own[::3] = -1
        stack._neighbours(sp.csr_matrix(reference), exclude=own)

    # A training row must not find itself: rows of the reference, each excluded at its position.
    own = np.arange(400)
    own[::3] = -1  # ... and some rows that are not in the reference
    fast = stack._neighbours(sp.csr_matrix(reference), exclude=own)
    np.testing.assert_allclose(
        fast, stack._neighbours_brute(sp.csr_matrix(reference), exclude=own), rtol=1e-5
    )
    assert (fast[own >= 0, 1] < 0.9999).all() and (fast[own < 0, 1] == pytest.approx(1.0))


def test_a_query_sharing_no_word_with_enough_references_gets_the_brute_force_answer() -> None:
    reference = sp.csr_matrix(np.eye(5, 8, dtype=np.float32))  # each reference has a word of its own
    queries = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0], [0] * 7 + [1]], dtype=np.float32))
    stack = _stack_with_reference(reference, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), k=3)
    fast = stack._neighbours(normalize(queries))
    np.testing.assert_allclose(fast, stack._neighbours_brute(normalize(queries)))
    assert fast[0, 0] == pytest.approx(1.5, abs=1e-6)  # the two it shares a word with; the rest weigh ~0
    assert fast[1, 1] == 0.0  # no shared word at all: no similarity, a finite price
    assert np.isfinite(fast).all()
    assert stack._neighbours(queries[:0]).shape == (0, 2)


def test_the_searched_columns_are_those_held_by_at_most_max_df_of_the_references() -> None:
    # 40 references; the columns are held by 40, 20, 8 and 0 of them
    held = np.zeros((40, 4), dtype=np.float32)
    held[:, 0], held[:20, 1], held[:8, 2] = 1.0, 1.0, 1.0
    reference = sp.csr_matrix(held)
    np.testing.assert_array_equal(searched_columns(reference, 0.5), [False, True, True, True])
    np.testing.assert_array_equal(searched_columns(reference, 0.4), [False, False, True, True])
    # ... but a column held by at most KNN_MIN_HELD references is always searched: a tiny share
    # (or a small reference) must not leave the kNN with nothing to compare
    assert KNN_MIN_HELD == 10
    np.testing.assert_array_equal(searched_columns(reference, 1e-9), [False, False, True, True])
    assert searched_columns(reference, 1.0) is None  # nothing left out
    kept = keep_columns(reference, np.array([False, True, True, True]))
    np.testing.assert_array_equal(kept.toarray(), held * [0, 1, 1, 1])
    assert kept.nnz == 28 and kept.shape == reference.shape  # removed, not stored as zeros


def test_the_knn_leaves_the_common_columns_out_of_the_similarity() -> None:
    rng = np.random.default_rng(3)
    common = sp.csr_matrix(np.full((400, 3), 0.5, dtype=np.float32))  # three columns every reference holds
    rest = sp.random(400, 57, density=0.15, random_state=1, dtype=np.float32, format="csr")
    reference = normalize(sp.hstack([common, rest], format="csr"))
    queries = normalize(sp.random(200, 60, density=0.2, random_state=2, dtype=np.float32, format="csr"))
    targets = rng.normal(3.0, 1.0, 400)
    k = 7
    stack = _stack_with_reference(reference, targets, k)
    everything = stack._neighbours(queries)
    stack.knn_columns_ = searched_columns(reference, 0.5)
    assert (
        stack.knn_columns_ is not None and not stack.knn_columns_[:3].any() and stack.knn_columns_[3:].all()
    )
    pruned = stack._neighbours(queries)

    # By hand: similarities over the kept columns only, the k largest, similarity-squared weights.
    sims = (queries[:, 3:] @ reference[:, 3:].T).toarray()
    top = np.argsort(-sims, axis=1)[:, :k]
    weights = np.take_along_axis(sims, top, axis=1) ** 2
    np.testing.assert_allclose(
        pruned[:, 0], (weights * targets[top]).sum(axis=1) / weights.sum(axis=1), rtol=1e-4
    )
    np.testing.assert_allclose(pruned[:, 1], sims.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(pruned, stack._neighbours_brute(queries), rtol=1e-5, atol=1e-6)
    assert not np.allclose(pruned[:, 1], everything[:, 1])  # the common columns did count before
    # The reference itself keeps every column: explanations' similar listings use the whole text.
    assert stack.knn_reference_[:, :3].nnz == 3 * 400


def test_a_stack_saved_before_the_searched_columns_existed_searches_every_column(
    featurized: tuple[sp.csr_matrix, np.ndarray, object],
) -> None:
    X, y, _ = featurized
    stack = make_estimator({**SMALL_STACK, "knn_max_df": 0.05, "knn_max_reference": 400}).fit(X, y)
    assert stack.knn_columns_ is not None and 0 < stack.knn_columns_.sum() < len(stack.knn_columns_)
    # the share is of the references the kNN searches (a sample of the training rows), not of all rows
    np.testing.assert_array_equal(stack.knn_columns_, searched_columns(stack.knn_reference_, 0.05))
    text = stack._text(X[:40])
    pruned = stack._neighbours(text)
    del stack.knn_columns_  # as a model saved by an earlier version ...
    del stack.knn_max_df
    assert stack.get_params()["knn_max_df"] == 1.0  # ... which still shows its parameters
    everything = stack._neighbours(text)
    assert not np.allclose(pruned[:, 1], everything[:, 1])
    assert make_estimator({**SMALL_STACK, "knn_max_df": 1.0}).fit(X, y).knn_columns_ is None


def test_the_searched_reference_is_built_once_and_never_saved(
    featurized: tuple[sp.csr_matrix, np.ndarray, object],
) -> None:
    X, y, _ = featurized
    stack = make_estimator(SMALL_STACK).fit(X, y)
    text = stack._text(X[:5])
    first = stack._neighbours(text)
    cached = stack._search_columns()
    assert stack._search_columns() is cached  # not rebuilt per search
    assert "_search_cache" not in sio.loads(sio.dumps(stack), trusted=list(TRUSTED_TYPES)).__dict__
    stack.knn_columns_ = None  # a new mask rebuilds it
    assert stack._search_columns() is not cached
    assert not np.allclose(stack._neighbours(text), first)


def test_stack_and_blend_survive_skops_with_the_trusted_types(
    featurized: tuple[sp.csr_matrix, np.ndarray, object],
) -> None:
    """The saved model may contain only TRUSTED_TYPES: a new class left off the list fails here."""
    listings = generate_listings(400, seed=8)
    listings = listings[listings["price"] > 0].reset_index(drop=True)
    blend = WeightedBlend(
        [
            ("ridge", make_estimator({"family": "ridge", "alpha": 4.0})),
            ("stack", make_estimator(SMALL_STACK)),
        ],
        [0.4, 0.6],
    )
    pipeline = build_pipeline(build_featurizer(FeatureParams()), blend)
    pipeline.fit(listings[FEATURES], listings["price"].to_numpy())
    restored = sio.loads(sio.dumps(pipeline), trusted=list(TRUSTED_TYPES))
    probe = listings[FEATURES].head(20)
    np.testing.assert_allclose(restored.predict(probe), pipeline.predict(probe))
    assert isinstance(restored.named_steps["model"], LogPriceRegressor)


def test_the_packaged_search_space_gives_the_stack_its_knn_max_df() -> None:
    from hyperopt.pyll.stochastic import sample

    from price_alchemy.params import load_params
    from price_alchemy.training.families import search_space

    tuning = load_params().tuning
    config = sample(search_space(tuning), rng=np.random.default_rng(0))
    assert config["family"] == "stack"
    assert make_estimator(config).knn_max_df == tuning.stack.knn_max_df == 0.02


def test_the_stack_searches_the_tf_idf_and_reduces_it_with_the_word_vectors(
    featurized: tuple[sp.csr_matrix, np.ndarray, object],
) -> None:
    """The dense word-vector blocks are in every row: the kNN leaves them out of its reference (its
    size stays that of the sparse text), while the SVD given to the trees sees them."""
    X, y, featurizer = featurized
    start = text_start(featurizer)
    assert start == len(CODE_COLUMNS) + len(NUMERIC) + MEANING_COLUMNS
    assert X[:, start - MEANING_COLUMNS : start].nnz > 0.9 * X.shape[0] * MEANING_COLUMNS
    stack = make_estimator(SMALL_STACK).fit(X, y)
    assert stack.n_dense == MEANING_COLUMNS
    assert stack.knn_reference_.shape[1] == X.shape[1] - start
    np.testing.assert_allclose(
        stack.knn_reference_[:5].toarray(), normalize(X[:5, start:]).toarray(), rtol=1e-5, atol=1e-7
    )
    assert stack.svd_.components_.shape[1] == X.shape[1] - len(CODE_COLUMNS) - len(NUMERIC)
    meaning = np.abs(stack.svd_.components_[:, :MEANING_COLUMNS]).sum()
    assert meaning > 0.1 * np.abs(stack.svd_.components_).sum()
