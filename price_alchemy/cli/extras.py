"""Commands that need an optional extra refuse clearly when it is not installed.

``pip install price-alchemy`` gives the core (generate, ingest, train, predict, score, demo, config);
``serve`` needs ``price-alchemy[serve]``, ``ship`` and ``monitor`` need ``price-alchemy[monitor]``.
Without the extra such a command prints which modules are missing and the pip command to run,
and exits 1, instead of a ``ModuleNotFoundError`` traceback from deep inside the import.
"""

from __future__ import annotations

from importlib.util import find_spec

import typer
from rich.markup import escape

from price_alchemy.cli.screens import err

#: Top-level modules each extra provides (tests/unit/test_dependencies.py checks them against
#: pyproject.toml and against what the extra's subpackage imports).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "httptools", "prometheus_client", "starlette", "uvicorn", "uvloop"),
    "monitor": ("elasticsearch", "evidently", "httpx"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [module for module in EXTRA_MODULES[extra] if find_spec(module) is None]


def require_extra(extra: str, command: str) -> None:
    """Exit 1 with the install command when ``extra`` is not (fully) installed."""
    missing = missing_modules(extra)
    if missing:
        err.print(
            f"[bold red]error:[/] `price-alchemy {command}` needs the {extra} extra "
            f"(missing modules: {', '.join(missing)}); install it with: "
            + escape(f"pip install 'price-alchemy[{extra}]'"),
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(1)
