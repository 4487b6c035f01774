"""Pricing frames of listings with one model, in this process or in one worker process per core.

The model's cleaning, TF-IDF and trees run one thread at a time (only the kNN search's C++ kernel
uses two threads, ``estimators.KNN_THREADS``), so worker processes are what uses every core.
Workers start with ``spawn`` (no inherited threads or locks) and import only this module, the
safe loader and the model's own classes: they load the model files once with
:func:`price_alchemy.model_files.load_model_dir` (skops only, trusted types only, the registered
digest), exactly as the registry would. Results come back in submission order with at most
``2 * workers`` pieces in flight, so memory does not grow with the input. No MLflow here:
:func:`price_alchemy.inference.open_model` fetches the files.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from price_alchemy.price_range import PriceInterval
from price_alchemy.schema import FEATURE_COLUMNS

log = logging.getLogger(__name__)

K = TypeVar("K")
#: Rows per model call: big enough that per-call costs vanish, small enough to keep each worker's
#: working set (the kNN's similarity blocks, the TF-IDF matrices) small.
SCORE_ROWS = 10_000
#: Inputs of fewer pieces than this are priced in the calling process.
POOL_MIN_PIECES = 3


@dataclass(frozen=True)
class ScoringModel:
    """A model's files on local disk and what travels with it, ready for :class:`Scorer`."""

    uri: str
    label: str
    model_name: str
    version: str | None
    model_dir: Path
    digest: str | None
    interval: PriceInterval | None
    fallback_price: float | None


_WORKER_MODEL: Any = None


def _init_worker(model_dir: str, digest: str | None, label: str) -> None:
    """Worker start-up: quiet, one thread per library, and the model loaded once."""
    global _WORKER_MODEL
    from threadpoolctl import threadpool_limits

    from price_alchemy.model_files import load_model_dir
    from price_alchemy.runtime import quiet_libraries

    quiet_libraries()
    # One thread per library in each worker: the workers are the parallelism, and BLAS or OpenMP
    # threads spinning next to the other workers' would only fight for the same cores.
    threadpool_limits(1)
    _WORKER_MODEL = load_model_dir(Path(model_dir), expected_digest=digest, what=label)


def _predict_in_worker(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(_WORKER_MODEL.predict(frame), dtype=np.float64)


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Scorer:
    """Prices frames of listings (feature columns) with one model, in submission order.

    With ``workers`` > 1 and more than one frame to price, frames go to a pool of worker processes
    (started with ``spawn``: no inherited threads or locks); a single frame is priced in this
    process, which loads the model only then. At most ``2 * workers`` frames are in flight.
    """

    def __init__(self, model: ScoringModel, *, workers: int | None = None) -> None:
        self.model = model
        self.workers = default_workers() if workers is None else max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._local: Any = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _local_model(self) -> Any:
        if self._local is None:
            from price_alchemy.model_files import load_model_dir

            self._local = load_model_dir(
                self.model.model_dir, expected_digest=self.model.digest, what=self.model.label
            )
        return self._local

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            log.info("pricing with %d worker processes (%s)", self.workers, self.model.label)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(self.model.model_dir), self.model.digest, self.model.label),
            )
        return self._pool

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Prices of one frame, in this process."""
        if frame.empty:
            return np.empty(0)
        return np.asarray(self._local_model().predict(frame[list(FEATURE_COLUMNS)]), dtype=np.float64)

    def map(self, frames: Iterable[tuple[K, pd.DataFrame]]) -> Iterator[tuple[K, np.ndarray]]:
        """``(key, prices)`` for each ``(key, frame)``, in order; frames are split to ``SCORE_ROWS``.

        Up to :data:`POOL_MIN_PIECES` pieces are priced here: starting workers (~5 s: imports and
        the model) would cost more than it saves.
        """
        pieces = _pieces(frames)
        head = list(islice(pieces, POOL_MIN_PIECES))
        parts: list[np.ndarray] = []
        if len(head) < POOL_MIN_PIECES or self.workers == 1:
            for key, piece, last in chain(head, pieces):
                parts.append(self.predict(piece))
                if last:
                    yield key, _concat(parts)
            return
        pool = self._start_pool()
        pending: deque[tuple[K, Future[np.ndarray], bool]] = deque()

        def collect() -> tuple[K, np.ndarray] | None:
            key, future, last = pending.popleft()
            parts.append(future.result())
            return (key, _concat(parts)) if last else None

        for key, piece, last in chain(head, pieces):
            if piece.empty:
                future: Future[np.ndarray] = Future()
                future.set_result(np.empty(0))
            else:
                future = pool.submit(_predict_in_worker, piece[list(FEATURE_COLUMNS)])
            pending.append((key, future, last))
            while len(pending) > 2 * self.workers:
                if (done := collect()) is not None:
                    yield done
        while pending:
            if (done := collect()) is not None:
                yield done


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """The parts joined, and the list emptied for the next frame."""
    joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
    parts.clear()
    return joined


def _pieces(frames: Iterable[tuple[K, pd.DataFrame]]) -> Iterator[tuple[K, pd.DataFrame, bool]]:
    """Each frame cut into pieces of at most ``SCORE_ROWS``; the flag marks a frame's last piece."""
    for key, frame in frames:
        if len(frame) <= SCORE_ROWS:
            yield key, frame, True
            continue
        starts = range(0, len(frame), SCORE_ROWS)
        for start in starts:
            yield key, frame.iloc[start : start + SCORE_ROWS], start == starts[-1]


class SeenIds:
    """Ids already priced: sorted arrays merged by size (8 bytes per id, O(log n) arrays)."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def duplicated(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` were seen before, or earlier in ``ids``; then remembers them all."""
        dup = pd.Series(ids).duplicated(keep="first").to_numpy()
        for level in self._levels:
            pos = np.minimum(np.searchsorted(level, ids), len(level) - 1)
            dup |= level[pos] == ids
        self._levels.append(np.unique(ids))
        while len(self._levels) > 1 and len(self._levels[-1]) >= len(self._levels[-2]):
            top = self._levels.pop()
            self._levels[-1] = np.union1d(self._levels[-1], top)
        return dup
