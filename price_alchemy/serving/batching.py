"""Micro-batching: concurrent requests share one model call.

A model call costs about the same for 1 row as for 100 (the pipeline's per-call overhead
dominates), so one worker task gathers whatever requests are waiting (after a short window, a few
milliseconds), runs a single ``predict`` in a dedicated thread, and hands each request its slice.
While a call runs, new requests queue up and form the next batch, so batches grow with the load
and latency stays near two model calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from price_alchemy.errors import ExplanationUnavailableError, ModelNotReadyError, PredictionError
from price_alchemy.explain import Explanation
from price_alchemy.serving.model_store import LoadedModel, ModelStore, listings_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    prices: np.ndarray
    model: LoadedModel
    explanations: list[Explanation] | None = None  # one per row when the request asked to explain


@dataclass
class _Job:
    rows: list[dict[str, Any]]
    future: asyncio.Future[BatchResult] = field(repr=False)
    explain: bool = False


class MicroBatcher:
    """Coalesces concurrent :meth:`predict` calls into model calls of at most ``max_rows`` rows."""

    def __init__(
        self,
        store: ModelStore,
        *,
        max_rows: int,
        window_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._max_rows = max_rows
        self._window_s = window_s
        self._on_batch = on_batch
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(ModelNotReadyError("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def predict(self, rows: Sequence[dict[str, Any]], *, explain: bool = False) -> BatchResult:
        """Prices for ``rows`` (listing fields), all from the same model; explained if ``explain``.

        Explained and plain requests share model calls; only the explained rows are explained.
        """
        current = self._store.current
        if current is None:
            raise ModelNotReadyError(f"no model loaded: {self._store.last_error or 'still starting'}")
        if self._task is None:
            raise ModelNotReadyError("the prediction worker is not running")
        if explain and current.explainer is None:
            raise ExplanationUnavailableError(current.explain_error or "this model cannot explain its prices")
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(list(rows), future, explain))
        self._wakeup.set()
        return await future

    def _take(self) -> list[_Job]:
        """Waiting jobs up to ``max_rows`` rows (a job is never split; the first is always taken)."""
        jobs = [self._pending.popleft()]
        rows = len(jobs[0].rows)
        while self._pending and rows + len(self._pending[0].rows) <= self._max_rows:
            job = self._pending.popleft()
            jobs.append(job)
            rows += len(job.rows)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._window_s > 0:
                await asyncio.sleep(self._window_s)
            jobs = [job for job in self._take() if not job.future.done()]  # drop cancelled requests
            if not jobs:
                continue
            model = self._store.current  # read once: the whole batch uses one model
            if model is None:
                for job in jobs:
                    job.future.set_exception(ModelNotReadyError("no model loaded"))
                continue
            rows = [row for job in jobs for row in job.rows]
            explained = [job for job in jobs if job.explain]
            try:
                if explained:
                    prices, explanations = await loop.run_in_executor(
                        self._executor,
                        _predict_explained,
                        model,
                        rows,
                        [job.explain for job in jobs for _ in job.rows],
                    )
                else:
                    prices, explanations = (
                        await loop.run_in_executor(self._executor, _predict, model, rows),
                        None,
                    )
            except Exception as exc:
                log.exception(
                    "model %s v%s failed on %d rows", model.meta.name, model.meta.version, len(rows)
                )
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(PredictionError(f"prediction failed: {type(exc).__name__}"))
                continue
            if self._on_batch is not None:
                self._on_batch(len(rows))
            start = 0
            for job in jobs:
                end = start + len(job.rows)
                if job.future.done():
                    pass
                elif not job.explain:
                    job.future.set_result(BatchResult(prices[start:end], model))
                elif isinstance(explanations, Exception):
                    job.future.set_exception(explanations)
                else:
                    assert explanations is not None
                    job.future.set_result(BatchResult(prices[start:end], model, explanations[start:end]))
                start = end


def _predict_explained(
    model: LoadedModel, rows: list[dict[str, Any]], wanted: list[bool]
) -> tuple[np.ndarray, list[Explanation] | Exception]:
    """Prices of all rows and explanations of the wanted ones, from one featurization (in row
    positions; an error instead of them if they cannot be made, which fails only the requests
    that asked). Without an explainer the prices come from the plain path."""
    import sklearn

    if model.explainer is None:
        return _predict(model, rows), ExplanationUnavailableError(
            model.explain_error or "this model cannot explain its prices"
        )
    positions = [i for i, want in enumerate(wanted) if want]
    frame = listings_frame(rows)
    try:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            prices, found = model.explainer.price_and_explain(frame, positions)
    except Exception as exc:
        log.exception(
            "model %s v%s failed to explain %d rows", model.meta.name, model.meta.version, len(positions)
        )
        return _predict(model, rows), PredictionError(f"explanation failed: {type(exc).__name__}")
    _check(prices, len(rows))
    explanations: list[Any] = [None] * len(rows)
    for i, explanation in zip(positions, found, strict=True):
        explanations[i] = explanation
    return prices, explanations


def _check(prices: np.ndarray, n: int) -> None:
    if prices.shape != (n,) or not np.all(np.isfinite(prices)):
        raise PredictionError(f"model returned {prices.shape} values or non-finite prices for {n} rows")


def _predict(model: LoadedModel, rows: list[dict[str, Any]]) -> np.ndarray:
    prices = model.predict(listings_frame(rows))
    _check(prices, len(rows))
    return prices
