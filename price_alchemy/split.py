"""Deterministic train/valid/test split by a salted hash of ``listing_id``.

The same listing always falls in the same part, whatever the batch order or size, so a rerun
(or a retrain on more data) evaluates on a stable test set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from price_alchemy.params import SplitParams
from price_alchemy.schema import LISTING_ID

_BUCKETS = 10_000


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def hash_buckets(ids: pd.Series, salt: str) -> np.ndarray:
    """A uniform bucket in [0, 1) per id, stable across processes and pandas versions."""
    # pandas ignores hash_key for integers, so the salt is mixed into the value before hashing.
    salt64 = np.uint64(int(hashlib.md5(salt.encode("utf-8")).hexdigest()[:16], 16))
    hashed = pd.util.hash_array(ids.to_numpy(dtype=np.int64).view(np.uint64) ^ salt64)
    return (hashed % _BUCKETS) / _BUCKETS


def split_listings(listings: pd.DataFrame, params: SplitParams) -> Split:
    """Split listings into train/valid/test by hashed id (test first, then valid)."""
    bucket = hash_buckets(listings[LISTING_ID], params.salt)
    is_test = bucket < params.test_fraction
    is_valid = ~is_test & (bucket < params.test_fraction + params.valid_fraction)
    is_train = ~is_test & ~is_valid
    return Split(
        train=listings[is_train].reset_index(drop=True),
        valid=listings[is_valid].reset_index(drop=True),
        test=listings[is_test].reset_index(drop=True),
    )
