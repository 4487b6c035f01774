"""Shared values and helpers of the API tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from price_alchemy.eventlog import EventLogReader

LISTING: dict[str, Any] = {
    "name": "Nike Air Max running shoes",
    "item_condition_id": 2,
    "category_name": "Men/Shoes/Athletic",
    "brand_name": "Nike",
    "shipping": 1,
    "item_description": "Barely worn, size 10, original box. SECRET-DESCRIPTION-TEXT",
}


@dataclass(frozen=True)
class Registry:
    """The session's MLflow store with one champion."""

    tracking_uri: str
    version: str
    run_id: str
    test_rmsle: float
    interval: dict[str, float]


AppFactory = Callable[..., TestClient]


def read_events(home: Path) -> list[dict[str, Any]]:
    """Every request event written under ``home`` so far, in order."""
    records = EventLogReader(home / "request-log", name="test").read(max_events=100_000)
    assert all(r.error is None for r in records)
    return [r.event for r in records if r.event is not None]
