"""Small MLPs on the sparse featurizer matrix, averaged: the recipe that won the Mercari challenge.

The winners (1st place, Kaggle Mercari Price Suggestion) trained a few small feed-forward networks
(``hidden -> 64 -> 64 -> 1``, relu) on TF-IDF of the listing text, half of them on its *binarized*
copy, for a few epochs with a doubling batch size, and averaged them. Different initialisations
and inputs make their errors differ, so the average beats each member.

:class:`SparseMLPRegressor` is that recipe on the featurizer's matrix (see price_alchemy.features),
written in numpy so that a fitted model holds only arrays (skops persists them; see TRUSTED_TYPES).
The first layer has ``n_columns x hidden`` weights, but a batch touches only the rows of the
columns its listings use: gradients and Adam moments are computed and applied on those rows only
(lazy Adam, as in PyTorch's SparseAdam), L2 included, so a step costs what the batch holds, not
what the vocabulary holds. The input is also cut to the ``max_columns`` most frequent columns
(:class:`~price_alchemy.estimators.FrequentColumns`), which bounds the model's size.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from price_alchemy.estimators import CodeEncoder, FrequentColumns

_HIDDEN = (64, 64)  # the layers after the first, as in the winning recipe
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


def _binarized(X: sp.csr_matrix) -> sp.csr_matrix:
    out = X.copy()
    out.data = (out.data != 0).astype(np.float32)
    return out


def _init_layers(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    """Glorot-uniform weights and zero biases: ``[W1, b1, W2, b2, ...]``."""
    layers: list[np.ndarray] = []
    for fan_in, fan_out in pairwise(sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        layers.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
        layers.append(np.zeros(fan_out, dtype=np.float32))
    return layers


def _forward(layers: list[np.ndarray], X: sp.csr_matrix) -> list[np.ndarray]:
    """Activations of every layer; the last is the (standardised) prediction column."""
    outputs = [np.maximum(np.asarray(X @ layers[0]) + layers[1], 0.0)]
    for k in range(2, len(layers), 2):
        z = outputs[-1] @ layers[k] + layers[k + 1]
        outputs.append(z if k == len(layers) - 2 else np.maximum(z, 0.0))
    return outputs


class _Adam:
    """Adam over a network's layers; the first weight matrix is updated only on given rows."""

    def __init__(self, layers: list[np.ndarray], learning_rate: float, alpha: float):
        self.m = [np.zeros_like(a) for a in layers]
        self.v = [np.zeros_like(a) for a in layers]
        self.learning_rate, self.alpha, self.t = learning_rate, alpha, 0

    def step(self, layers: list[np.ndarray], grads: list[np.ndarray], rows: np.ndarray) -> None:
        self.t += 1
        rate = float(self.learning_rate * np.sqrt(1 - _BETA2**self.t) / (1 - _BETA1**self.t))
        for k, (param, grad) in enumerate(zip(layers, grads, strict=True)):
            sparse = k == 0
            value = param[rows] if sparse else param
            if k % 2 == 0 and self.alpha > 0:  # weights carry the L2 penalty, biases do not
                grad += np.float32(self.alpha) * value
            m = self.m[k][rows] if sparse else self.m[k]
            v = self.v[k][rows] if sparse else self.v[k]
            m *= _BETA1
            m += (1 - _BETA1) * grad
            v *= _BETA2
            v += (1 - _BETA2) * (grad * grad)
            update = np.sqrt(v)
            update += _EPS
            np.divide(m, update, out=update)
            update *= rate
            if sparse:
                self.m[k][rows], self.v[k][rows] = m, v
                param[rows] = value - update
            else:
                param -= update


def _gradients(
    layers: list[np.ndarray], batch: sp.csr_matrix, target: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Gradients of the batch's mean squared error, the first layer's on the batch's columns only.

    Returns the gradients (``grads[0]`` has one row per entry of ``rows``) and ``rows``, the
    sorted columns the batch uses.
    """
    # The batch's columns, renumbered 0..k-1: the first layer's gradient has k rows.
    rows, local = np.unique(batch.indices, return_inverse=True)
    compact = sp.csr_matrix((batch.data, local.ravel(), batch.indptr), shape=(batch.shape[0], len(rows)))
    outputs = _forward(layers, batch)
    delta = (outputs[-1][:, 0] - target)[:, None] * (2.0 / batch.shape[0])
    grads: list[np.ndarray] = [np.empty(0)] * len(layers)
    for k in range(len(layers) - 2, 0, -2):
        grads[k] = outputs[k // 2 - 1].T @ delta
        grads[k + 1] = delta.sum(axis=0)
        delta = (delta @ layers[k].T) * (outputs[k // 2 - 1] > 0)
    grads[0] = np.asarray(compact.T @ delta, dtype=layers[0].dtype)
    grads[1] = delta.sum(axis=0)
    return grads, rows


def _train_member(
    X: sp.csr_matrix, target: np.ndarray, layers: list[np.ndarray], rng: np.random.Generator, est: Any
) -> None:
    adam = _Adam(layers, est.learning_rate, est.alpha)
    n = X.shape[0]
    for epoch in range(est.epochs):
        size = int(min(n, est.batch_size * 2**epoch))
        order = rng.permutation(n)
        for start in range(0, n, size):
            picked = order[start : start + size]
            grads, rows = _gradients(layers, X[picked], target[picked])
            adam.step(layers, grads, rows)


class SparseMLPRegressor(RegressorMixin, BaseEstimator):
    """The average of ``n_models`` small MLPs on one-hot codes, target encodings and TF-IDF.

    Input: the featurizer matrix (``n_codes`` category codes first), target log1p(price).
    Member ``i`` sees the binarized input when ``binary`` and ``i`` is odd (every other member),
    is initialised and shuffled with ``seed + i``, and is trained for ``epochs`` passes, the batch
    size doubling each pass (small batches learn fast at first, large ones settle). The target is
    standardised for training and restored at prediction.
    """

    def __init__(
        self,
        n_codes: int,
        hidden_units: int = 128,
        n_models: int = 4,
        epochs: int = 3,
        batch_size: int = 64,
        alpha: float = 1e-5,
        learning_rate: float = 3e-3,
        max_columns: int = 50_000,
        binary: bool = True,
        seed: int = 42,
    ):
        self.n_codes = n_codes
        self.hidden_units = hidden_units
        self.n_models = n_models
        self.epochs = epochs
        self.batch_size = batch_size
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_columns = max_columns
        self.binary = binary
        self.seed = seed

    def _inputs(self, X: Any, fitting: bool, y: np.ndarray | None = None) -> sp.csr_matrix:
        if fitting:
            encoded = self.codes_.fit_transform(X, y)
            self.columns_ = FrequentColumns(self.max_columns).fit(encoded)
        else:
            encoded = self.codes_.transform(X)
        out = sp.csr_matrix(self.columns_.transform(encoded), dtype=np.float32)
        out.sort_indices()
        return out

    def _member_input(self, inputs: sp.csr_matrix, i: int) -> sp.csr_matrix:
        return _binarized(inputs) if self.binary and i % 2 == 1 else inputs

    def fit(self, X: Any, y: Any) -> SparseMLPRegressor:
        for name, value in (
            ("n_models", self.n_models),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
        ):
            if value < 1:
                raise ValueError(f"SparseMLPRegressor: {name} must be at least 1, got {value}")
        X = sp.csr_matrix(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        self.codes_ = CodeEncoder(self.n_codes, seed=self.seed)
        inputs = self._inputs(X, True, y)
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        target = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        sizes = [inputs.shape[1], self.hidden_units, *_HIDDEN, 1]
        members = []
        for i in range(self.n_models):
            rng = np.random.default_rng(self.seed + i)
            layers = _init_layers(rng, sizes)
            # Each step multiplies matrices of a few dozen rows: a BLAS thread pool costs far more
            # than it saves there (3-4x slower on a busy two-core machine).
            with threadpool_limits(1, user_api="blas"):
                _train_member(self._member_input(inputs, i), target, layers, rng, self)
            members.append(layers)
        self.members_ = members
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "members_")
        inputs = self._inputs(sp.csr_matrix(X, dtype=np.float32), False)
        total = np.zeros(inputs.shape[0], dtype=np.float64)
        for i, layers in enumerate(self.members_):
            total += _forward(layers, self._member_input(inputs, i))[-1][:, 0]
        return total / len(self.members_) * self.y_scale_ + self.y_mean_
