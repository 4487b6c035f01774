"""The promotion lease: one promotion decision at a time across processes and hosts."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from price_alchemy.errors import PromotionLockError
from price_alchemy.mlflow_store.tracking import client
from price_alchemy.names import PROMOTION_LOCK_SUFFIX

if TYPE_CHECKING:
    from price_alchemy.config import Settings


log = logging.getLogger(__name__)


@contextmanager
def promotion_lock(
    settings: Settings, *, wait_s: float = 600.0, lease_s: float = 900.0
) -> Iterator[Callable[[], None]]:
    """Hold the registry-wide promotion lease while deciding and recording one promotion.

    The lease is a registered model ``<model>.promotion-lock``: the registry creates a name once,
    atomically, so exactly one process (CLI, Airflow worker, another host) holds it; the others
    poll until it is released or ``wait_s`` passes (:class:`PromotionLockError`). A lease older
    than ``lease_s`` (its holder died) is broken. Yields ``check``, which raises unless this
    process still holds the lease: call it right before moving the alias.
    """
    mlflow_client = client(settings)
    name = settings.model_name + PROMOTION_LOCK_SUFFIX
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            mlflow_client.create_registered_model(
                name,
                tags={"owner": owner, "expires_at": f"{time.time() + lease_s:.3f}"},
                description=f"promotion of {settings.model_name} in progress (held by {owner})",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _lease_holder(mlflow_client, name)
        if holder is not None and float(holder.get("expires_at", 0)) < time.time():
            log.warning("breaking the expired promotion lease of %s", holder.get("owner"))
            _release(mlflow_client, name, holder.get("owner"))
        elif time.monotonic() > deadline:
            raise PromotionLockError(
                f"another promotion of {settings.model_name} ({(holder or {}).get('owner')}) "
                f"holds the lease; waited {wait_s:g}s"
            )
        else:
            time.sleep(0.2 + random.random() * 0.3)  # jitter: waiters do not wake in lockstep

    def check() -> None:
        if (_lease_holder(mlflow_client, name) or {}).get("owner") != owner:
            raise PromotionLockError(
                f"the promotion lease of {settings.model_name} was lost; nothing recorded"
            )

    try:
        yield check
    finally:
        _release(mlflow_client, name, owner)


def _lease_holder(mlflow_client: MlflowClient, name: str) -> dict[str, str] | None:
    try:
        return dict(mlflow_client.get_registered_model(name).tags)
    except MlflowException:
        return None  # released meanwhile


def _release(mlflow_client: MlflowClient, name: str, owner: str | None) -> None:
    """Delete the lease if ``owner`` still holds it (never someone else's)."""
    if (_lease_holder(mlflow_client, name) or {}).get("owner") == owner:
        try:
            mlflow_client.delete_registered_model(name)
        except MlflowException as exc:
            log.warning("could not release the promotion lease %s: %s", name, exc)
