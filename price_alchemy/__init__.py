"""Price Alchemy: price suggestions for second-hand listings (Mercari format).

The public API for notebooks lives in the stage modules; the most used entry points are
re-exported lazily here so that ``import price_alchemy`` stays cheap:

    from price_alchemy import read_listings, generate_listings, validate_listings
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Settings": "price_alchemy.config",
    "get_settings": "price_alchemy.config",
    "load_params": "price_alchemy.params",
    "read_listings": "price_alchemy.data.files",
    "generate_listings": "price_alchemy.data.synthetic",
    "open_warehouse": "price_alchemy.data.warehouse",
    "validate_listings": "price_alchemy.validation",
    "build_pipeline": "price_alchemy.features",
    "split_listings": "price_alchemy.split",
    "run_training": "price_alchemy.training.stages",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'price_alchemy' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
