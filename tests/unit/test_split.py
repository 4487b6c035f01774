"""The hash split: deterministic, disjoint, complete, close to the asked fractions, stable as data grows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from price_alchemy.params import SplitParams
from price_alchemy.schema import LISTING_ID
from price_alchemy.split import Split, hash_buckets, split_listings

pytestmark = pytest.mark.unit

N_IDS = 10_000


def _frame(ids: np.ndarray | range) -> pd.DataFrame:
    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame({LISTING_ID: ids, "name": [f"item {i}" for i in ids], "price": ids % 50 + 1.0})


def _parts(split: Split) -> dict[int, str]:
    """listing_id -> the part it landed in."""
    out: dict[int, str] = {}
    for part in ("train", "valid", "test"):
        for listing_id in getattr(split, part)[LISTING_ID]:
            out[int(listing_id)] = part
    return out


def test_same_ids_same_split_whatever_the_row_order() -> None:
    frame = _frame(range(N_IDS))
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)

    first, again, reordered = (split_listings(f, SplitParams()) for f in (frame, frame, shuffled))

    assert _parts(first) == _parts(again) == _parts(reordered)
    pd.testing.assert_frame_equal(first.test, again.test)


def test_parts_are_disjoint_and_cover_every_row() -> None:
    frame = _frame(range(N_IDS))
    split = split_listings(frame, SplitParams())
    ids = {part: set(getattr(split, part)[LISTING_ID]) for part in ("train", "valid", "test")}

    assert not ids["train"] & ids["valid"]
    assert not ids["train"] & ids["test"]
    assert not ids["valid"] & ids["test"]
    assert ids["train"] | ids["valid"] | ids["test"] == set(range(N_IDS))
    assert sum(split.sizes().values()) == N_IDS
    # Each part keeps whole rows (not just ids) and a fresh index.
    row = split.test.iloc[0]
    assert row["name"] == f"item {row[LISTING_ID]}"
    assert list(split.valid.index) == list(range(len(split.valid)))


@pytest.mark.parametrize(("valid", "test"), [(0.1, 0.1), (0.2, 0.05), (0.3, 0.15)])
def test_fractions_are_close_to_the_parameters(valid: float, test: float) -> None:
    sizes = split_listings(
        _frame(range(N_IDS)), SplitParams(valid_fraction=valid, test_fraction=test)
    ).sizes()

    # Binomial standard deviation on 10k ids is at most 0.005; 0.015 is three of them.
    assert sizes["test"] / N_IDS == pytest.approx(test, abs=0.015)
    assert sizes["valid"] / N_IDS == pytest.approx(valid, abs=0.015)
    assert sizes["train"] / N_IDS == pytest.approx(1 - valid - test, abs=0.02)


def test_a_different_salt_gives_a_different_assignment() -> None:
    frame = _frame(range(N_IDS))
    base = _parts(split_listings(frame, SplitParams(salt="price-alchemy-v1")))
    other = _parts(split_listings(frame, SplitParams(salt="price-alchemy-v2")))

    moved = sum(base[i] != other[i] for i in base) / N_IDS
    # Independent 80/10/10 draws agree with probability 0.8^2 + 0.1^2 + 0.1^2 = 0.66.
    assert moved == pytest.approx(0.34, abs=0.04)


def test_adding_rows_does_not_move_existing_ones() -> None:
    before = _parts(split_listings(_frame(range(N_IDS)), SplitParams()))
    grown = _frame(np.concatenate([np.arange(N_IDS * 2, N_IDS * 3), np.arange(N_IDS)[::-1]]))
    after = _parts(split_listings(grown, SplitParams()))

    assert {i: after[i] for i in before} == before
    assert len(after) == 2 * N_IDS


def test_buckets_are_pinned_across_processes_and_versions() -> None:
    """Golden values: a change of hashing would silently move every listing to another part."""
    buckets = hash_buckets(pd.Series([0, 1, 2, 3, 42, 10**12]), "price-alchemy-v1")

    np.testing.assert_allclose(buckets, [0.712, 0.1176, 0.7593, 0.6181, 0.0484, 0.8986])
    all_buckets = hash_buckets(pd.Series(np.arange(N_IDS)), "any salt")
    assert all_buckets.min() >= 0.0 and all_buckets.max() < 1.0
