"""What every fixture that starts a real service needs: a free port, and skip-or-fail when it can't.

A service that cannot start skips its tests on a developer machine but fails them under CI
(``CI`` set): a missing service must never turn into a silently green build.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) the tests that need ``service``."""
    if os.environ.get("CI"):
        pytest.fail(f"{service} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{service} unavailable: {reason}")
