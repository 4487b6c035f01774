"""The Great Expectations suite against small hand-built frames in the canonical listing format.

Each test runs the real suite (GE is imported once per session, ~6 s); frames are built here, never
read from shared data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from price_alchemy import schema
from price_alchemy.errors import DataValidationError
from price_alchemy.params import ValidationParams
from price_alchemy.validation import ValidationReport, raise_for_verdict, save_report, validate_listings

pytestmark = pytest.mark.data

_ITEMS = [
    ("MLB Cincinnati Reds T Shirt Size XL", 3, "Men/Tops/T-shirts", None, 1, "No description yet", 10.0),
    (
        "Razer BlackWidow Keyboard",
        3,
        "Electronics/Computers & Tablets/Components & Parts",
        "Razer",
        0,
        "Works like it came out of the box.",
        52.0,
    ),
    (
        "AVA-VIV Blouse",
        1,
        "Women/Tops & Blouses/Blouse",
        "Target",
        1,
        "Adorable top with a hint of lace",
        10.0,
    ),
    ("Leather Horse Statues", 1, "Home/Home Décor/Home Décor Accents", None, 1, "New with tags.", 35.0),
    ("24K GOLD plated rose", 1, "Women/Jewelry/Necklaces", None, 0, "Complete with certificate.", 44.0),
    ("Bundled items requested for Ruie", 3, "Women/Other/Other", None, 0, "Banana republic bottoms", 59.0),
    ("Acacia santorini top", 3, "Women/Swimwear/Two-Piece", "Acacia Swimwear", 0, "Size small.", 64.0),
    (
        "Girls cheer bundle of 7",
        3,
        "Sports & Outdoors/Apparel/Girls",
        "Soffe",
        0,
        "Cheer shorts, small.",
        6.0,
    ),
    ("Girls Nike Pro shorts", 3, "Sports & Outdoors/Apparel/Girls", "Nike", 0, "Girls Size small.", 19.0),
    ("Porcelain clown doll VTG", 3, "Vintage & Collectibles/Collectibles/Doll", None, 0, "Thanks!", 8.0),
    ("Smashbox primer", 1, "Beauty/Makeup/Face", "Smashbox", 1, "Smashbox primer, new, never used.", 8.0),
    ("New vs pi k body mists", 1, "Beauty/Fragrance/Women", "Victoria's Secret", 0, "b.n. Body mists", 34.0),
    ("Black Skater dress", 2, "Women/Dresses/Above Knee, Mini", "Rue21", 0, "Xl, great condition", 16.0),
    ("Sharpener and eraser", 1, "Other/Office supplies/School Supplies", None, 1, "Brand new", 4.0),
    ("HOLD for Dogs2016 Minnie", 3, None, "Disney", 1, "Minnie Mouse ears, gently used.", 27.0),
    ("Too faced mascara", 1, "Beauty/Makeup/Eyes", "Too Faced", 1, "Full size, new.", 20.0),
    (
        "iPhone 6s Plus case",
        1,
        "Electronics/Cell Phones & Accessories/Cases, Covers & Skins",
        "Apple",
        1,
        "No description yet",
        9.0,
    ),
    ("PINK sweatpants", 2, "Women/Athletic Apparel/Pants, Tights, Leggings", "PINK", 0, "Size M.", 30.0),
    ("Vintage Pyrex bowl", 4, "Home/Kitchen & Dining/Dining & Entertaining", "Pyrex", 0, "Small chip.", 22.0),
    ("Free shipping: Lularoe Amelia", 2, "Women/Dresses/Knee-Length", "LuLaRoe", 1, "Size small.", 0.0),
]


def make_listings(n: int = 20, start_id: int = 1000) -> pd.DataFrame:
    """A clean canonical frame of ``n`` realistic listings (cycled) with unique ids."""
    rows = [_ITEMS[i % len(_ITEMS)] for i in range(n)]
    frame = pd.DataFrame(rows, columns=[*schema.FEATURE_COLUMNS, schema.PRICE])
    frame.insert(0, schema.LISTING_ID, np.arange(start_id, start_id + n, dtype=np.int64))
    return frame[list(schema.LISTING_COLUMNS)].astype(schema.DTYPES)


def reasons_by_id(report: ValidationReport) -> dict[int, str]:
    return {
        int(i): r for i, r in zip(report.quarantine["listing_id"], report.quarantine["reason"], strict=True)
    }


@pytest.fixture(scope="module")
def params() -> ValidationParams:
    return ValidationParams()


@pytest.fixture(scope="module")
def bad_frame() -> pd.DataFrame:
    """40 clean rows with ten broken ones (ids 1000..1009) and a later duplicate of id 1010."""
    frame = make_listings(40)
    frame.loc[0, "item_condition_id"] = 7
    frame.loc[1, "shipping"] = 2
    frame.loc[2, "price"] = -1.0
    frame.loc[3, "price"] = 20_000.0
    frame.loc[4, "name"] = "   "
    frame.loc[5, "name"] = "x" * (schema.NAME_MAX_LEN + 1)
    frame.loc[6, "category_name"] = "Women"
    frame.loc[7, ["item_condition_id", "shipping"]] = [0, 5]
    frame.loc[8, "name"] = None
    frame.loc[9, "item_description"] = "y" * (schema.DESCRIPTION_MAX_LEN + 1)
    frame.loc[30, "listing_id"] = 1010  # the row with id 1010 (position 10) comes first and is kept
    return frame


@pytest.fixture(scope="module")
def bad_report(bad_frame: pd.DataFrame, params: ValidationParams) -> ValidationReport:
    return validate_listings(bad_frame, params, batch_id="bad-rows")


def test_clean_frame_passes_with_empty_quarantine(params: ValidationParams) -> None:
    frame = make_listings(20)
    report = validate_listings(frame, params, batch_id="clean")
    assert report.passed, report.summary()
    assert report.n_bad == 0 and report.quarantine.empty
    assert list(report.quarantine.columns) == list(schema.QUARANTINE_COLUMNS)
    pd.testing.assert_frame_equal(report.valid, frame)
    assert all(o.success for o in report.outcomes)
    raise_for_verdict(report)  # no exception


def test_bad_rows_are_quarantined_with_reasons(bad_report: ValidationReport) -> None:
    assert reasons_by_id(bad_report) == {
        1000: "item_condition_id not in 1..5",
        1001: "shipping not in {0, 1}",
        1002: "price not in 0..10000",
        1003: "price not in 0..10000",
        1004: "name blank",
        1005: f"name longer than {schema.NAME_MAX_LEN}",
        1006: "category_name not shaped a/b/c",
        1007: "item_condition_id not in 1..5; shipping not in {0, 1}",
        1008: "name missing",
        1009: f"item_description longer than {schema.DESCRIPTION_MAX_LEN}",
        1010: "duplicate listing_id",
    }
    q = bad_report.quarantine
    assert (q["batch_id"] == "bad-rows").all() and (q["stage"] == "validate").all()
    assert q["line"].isna().all()
    duplicate = json.loads(q.loc[q["reason"] == "duplicate listing_id", "raw"].iloc[0])
    assert duplicate["listing_id"] == 1010 and duplicate["name"] == _ITEMS[30 % len(_ITEMS)][0]
    assert q["raw"].str.len().max() <= 1000
    first = json.loads(q.loc[q["listing_id"] == "1000", "raw"].iloc[0])
    assert first["category_name"] == "Men/Tops/T-shirts" and first["brand_name"] is None
    assert first["item_condition_id"] == 7
    long_name = json.loads(q.loc[q["listing_id"] == "1005", "raw"].iloc[0])
    assert long_name["name"] == "x" * (schema.NAME_MAX_LEN + 1)
    long_description = q.loc[q["listing_id"] == "1009", "raw"].iloc[0]
    assert len(long_description) == 1000 and long_description.startswith('{"listing_id":1009,')


def test_good_rows_are_kept_in_valid(bad_report: ValidationReport, bad_frame: pd.DataFrame) -> None:
    valid = bad_report.valid
    assert len(valid) == 40 - 11 and bad_report.n_rows == 40
    assert valid.dtypes.to_dict() == bad_frame.dtypes.to_dict()
    assert valid.index.equals(pd.RangeIndex(len(valid)))
    assert valid["listing_id"].is_unique
    # the first occurrence of the duplicated id is kept, with its own name
    kept = valid.loc[valid["listing_id"] == 1010, "name"]
    assert kept.tolist() == [_ITEMS[10][0]]
    assert not valid["listing_id"].isin(range(1000, 1010)).any()


def test_bad_fraction_above_threshold_fails_naming_threshold(bad_report: ValidationReport) -> None:
    assert bad_report.failed_critical == []
    assert bad_report.bad_fraction == pytest.approx(11 / 40)
    assert not bad_report.passed
    with pytest.raises(DataValidationError) as caught:
        raise_for_verdict(bad_report)
    message = str(caught.value)
    assert "max_bad_fraction 0.0500" in message and "bad_fraction 0.2750" in message
    assert caught.value.bad_fraction == pytest.approx(0.275)


def test_bad_fraction_threshold_comes_from_params(bad_frame: pd.DataFrame) -> None:
    report = validate_listings(bad_frame, ValidationParams(max_bad_fraction=0.3), batch_id="tolerant")
    assert report.passed and report.n_bad == 11


def test_prices_in_cents_fail_a_distribution_check(params: ValidationParams) -> None:
    frame = make_listings(20)
    frame["price"] = frame["price"] * 100
    report = validate_listings(frame, params, batch_id="cents")
    assert {"price_median", "price_mean"} <= set(report.failed_critical)
    median = next(o for o in report.outcomes if o.name == "price_median")
    assert median.observed == pytest.approx(2000.0)
    with pytest.raises(DataValidationError, match="price_median") as caught:
        raise_for_verdict(report)
    assert "price_median" in caught.value.failed


def test_all_zero_prices_fail(params: ValidationParams) -> None:
    frame = make_listings(20)
    frame["price"] = 0.0
    report = validate_listings(frame, params, batch_id="zeros")
    assert "price_zero_fraction" in report.failed_critical
    assert report.n_bad == 0  # zero is a legal price for one listing; the batch is what is wrong


def test_test_format_frame_needs_require_price_false(params: ValidationParams) -> None:
    frame = make_listings(20)
    frame["price"] = np.nan
    relaxed = validate_listings(frame, params, batch_id="test-file", require_price=False)
    assert relaxed.passed, relaxed.summary()
    assert relaxed.n_bad == 0
    strict = validate_listings(frame, params, batch_id="test-file", require_price=True)
    assert not strict.passed
    assert set(strict.quarantine["reason"]) == {"price missing"}
    assert "price_median" in strict.failed_critical


def test_missing_rate_above_bound_fails_batch(params: ValidationParams) -> None:
    frame = make_listings(20)
    frame["brand_name"] = None
    frame["category_name"] = None  # missing category is allowed per row ...
    report = validate_listings(frame, params, batch_id="no-brands")
    assert report.n_bad == 0
    # ... but not in every row of a batch
    assert set(report.failed_critical) == {"brand_name_missing_rate", "category_name_missing_rate"}


def test_missing_column_fails_without_raising(params: ValidationParams) -> None:
    frame = make_listings(20).drop(columns=["brand_name"])
    report = validate_listings(frame, params, batch_id="no-brand-column")
    assert {"columns_match", "brand_name_dtype", "brand_name_length"} <= set(report.failed_critical)
    length = next(o for o in report.outcomes if o.name == "brand_name_length")
    assert "brand_name" in length.observed["error"]


def test_non_positional_index_maps_rows_correctly(params: ValidationParams) -> None:
    frame = make_listings(20)
    frame.index = pd.Index(np.arange(20) * 7 + 3)[::-1]
    frame.loc[frame.index[5], "shipping"] = 3
    report = validate_listings(frame, params, batch_id="odd-index")
    assert reasons_by_id(report) == {1005: "shipping not in {0, 1}"}
    assert len(report.valid) == 19 and 1005 not in set(report.valid["listing_id"])


def test_min_rows(params: ValidationParams) -> None:
    report = validate_listings(make_listings(5), ValidationParams(min_rows=10), batch_id="tiny")
    assert report.failed_critical == ["min_rows"]


def test_save_report_writes_json_and_data_docs(bad_report: ValidationReport, tmp_path: Path) -> None:
    paths = save_report(bad_report, tmp_path / "reports")
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert paths["json"] == tmp_path / "reports" / "bad-rows.json"
    assert (saved["n_rows"], saved["n_bad"], saved["n_valid"]) == (40, 11, 29)
    assert saved["passed"] is False and saved["bad_fraction"] == pytest.approx(0.275)
    assert saved["reason_counts"]["price not in 0..10000"] == 2
    assert len(saved["outcomes"]) == len(bad_report.outcomes)
    index = paths["data_docs"]
    assert index.name == "index.html" and index.is_file()
    assert index.parent == tmp_path / "reports" / "data_docs"
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == 2  # one page per suite (rows, batch)
    rows_page = next(p for p in pages if "listings_rows" in p.parts)
    assert "item_condition_id" in rows_page.read_text(encoding="utf-8")
