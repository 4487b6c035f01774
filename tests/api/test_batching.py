"""The micro-batcher and the price range, on a stand-in model (no MLflow): fast and exact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy.serving.batching import MicroBatcher, ModelNotReadyError
from price_alchemy.serving.model_store import LoadedModel, ModelMetadata, PriceInterval

pytestmark = pytest.mark.api


class RecordingPipeline:
    """Price = 10 x condition + shipping; records the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert frame["item_condition_id"].dtype == np.int64 and frame["shipping"].dtype == np.int64
        self.calls.append(len(frame))
        return (10.0 * frame["item_condition_id"] + frame["shipping"]).to_numpy(dtype=float)


class FakeStore:
    def __init__(self, pipeline: Any, version: str = "7") -> None:
        meta = ModelMetadata("m", version, "champion", None, None, None, None)
        self.current: LoadedModel | None = LoadedModel(pipeline, meta, "registry", datetime.now(UTC))
        self.last_error: str | None = None


def _row(condition: int, shipping: int) -> dict[str, Any]:
    return {"name": "x", "item_condition_id": condition, "shipping": shipping}


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_slice() -> None:
    pipeline = RecordingPipeline()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(FakeStore(pipeline), max_rows=50, window_s=0.01)  # type: ignore[arg-type]
        batcher.start()
        try:
            requests = [[_row(1 + i % 5, i % 2)] * (1 + i % 3) for i in range(30)]
            results = await asyncio.gather(*(batcher.predict(rows) for rows in requests))
            return [r.prices for r in results]
        finally:
            await batcher.stop()

    prices = asyncio.run(scenario())

    for i, got in enumerate(prices):
        np.testing.assert_array_equal(got, np.full(1 + i % 3, 10.0 * (1 + i % 5) + i % 2))
    assert sum(pipeline.calls) == sum(1 + i % 3 for i in range(30)) == 60
    assert max(pipeline.calls) <= 50 and len(pipeline.calls) == 2  # 60 rows -> two calls of <= 50


def test_a_request_larger_than_the_batch_limit_is_never_split() -> None:
    pipeline = RecordingPipeline()

    async def scenario() -> None:
        batcher = MicroBatcher(FakeStore(pipeline), max_rows=4, window_s=0)  # type: ignore[arg-type]
        batcher.start()
        try:
            result = await batcher.predict([_row(2, 1)] * 6)
            assert result.prices.tolist() == [21.0] * 6
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert pipeline.calls == [6]


def test_no_model_is_not_ready() -> None:
    store = FakeStore(RecordingPipeline())
    store.current, store.last_error = None, "registry down"

    async def scenario() -> None:
        batcher = MicroBatcher(store, max_rows=4, window_s=0)  # type: ignore[arg-type]
        batcher.start()
        try:
            with pytest.raises(ModelNotReadyError, match="registry down"):
                await batcher.predict([_row(1, 1)])
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_price_interval_from_profile_and_bounds() -> None:
    interval = PriceInterval.from_profile(
        {"price_interval": {"coverage": 0.8, "log_residual_low": -0.5, "log_residual_high": 0.4, "rows": 9}}
    )
    assert interval is not None
    low, high = interval.bounds(np.array([0.0, 20.0]))
    np.testing.assert_allclose(low, [0.0, np.expm1(np.log1p(20.0) - 0.5)])
    np.testing.assert_allclose(high, [np.expm1(0.4), np.expm1(np.log1p(20.0) + 0.4)])


@pytest.mark.parametrize(
    "profile",
    [
        {},
        {"price_interval": None},
        {"price_interval": {"coverage": 0.8, "log_residual_low": -0.5}},
        {"price_interval": {"coverage": 0.8, "log_residual_low": 0.5, "log_residual_high": -0.4}},
        {"price_interval": {"coverage": 1.5, "log_residual_low": -0.5, "log_residual_high": 0.4}},
        {"price_interval": {"coverage": 0.8, "log_residual_low": "nan", "log_residual_high": 0.4}},
    ],
)
def test_a_missing_or_broken_interval_gives_no_range(profile: dict[str, Any]) -> None:
    assert PriceInterval.from_profile(profile) is None
