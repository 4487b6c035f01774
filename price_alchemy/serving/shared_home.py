"""What the API worker processes on one home share safely: the model cache.

``serve --workers N`` starts N processes on one ``PRICE_ALCHEMY_HOME`` (so do replicas sharing a
volume). Each keeps its own stream of the request log (:mod:`price_alchemy.eventlog`) and its own
model in memory, but the model cache on disk is one: its loads (download, move into the cache,
``current.json``, clean-up of older copies; or reading the cache at a start without MLflow) are
taken in turn under an exclusive ``flock`` on ``serving/model-cache.lock``, so one worker never
deletes the copy another just named, nor reads a half-replaced one.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from price_alchemy.config import Settings
from price_alchemy.serving.model_store import LoadedModel, ModelStore


class SharedHomeModelStore(ModelStore):
    """A :class:`ModelStore` whose loads are serialized with the other processes on the home."""

    def __init__(
        self,
        settings: Settings,
        on_swap: Callable[[LoadedModel], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(settings, on_swap=on_swap, on_failure=on_failure)
        self._lock_path = settings.model_cache_dir.parent / "model-cache.lock"
        self._held = threading.local()  # load_initial calls refresh: take the file lock once

    @contextmanager
    def _home_lock(self) -> Iterator[None]:
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another worker's load takes seconds at most
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
        finally:
            os.close(fd)

    def load_initial(self) -> None:
        with self._home_lock():
            super().load_initial()

    def refresh(self) -> bool:
        with self._home_lock():
            return super().refresh()
