"""The expectation suites of a listings batch, built from ``ValidationParams``.

Two suites, because they need different GE result formats:

* **rows** (``severity="warning"``): column map rules that judge single listings. They run with
  ``COMPLETE`` results so GE returns the index of every failing row; those rows are quarantined
  with the rule's reason and the rest of the batch goes on. A row rule alone never fails the batch:
  the batch fails when the quarantined fraction exceeds ``max_bad_fraction``.
* **batch** (``severity="critical"``): schema, row count, missing-value rates and the price
  distribution. They describe the batch as a whole (no single row is "the" bad one), run with
  ``BASIC`` results (``mostly`` expectations over 1.5M rows would otherwise return ~650k indices
  for brand_name alone) and any failure fails the batch.

Each expectation carries ``meta = {"name": <stable id>, "description": <readable text>}``; for row
rules the description is the quarantine reason (it names the column and the rule).

Price distribution checks use only statistics that do not depend on sample size: the median and
mean of positive prices (up to ``max_price``, so rows quarantined for price do not skew them) within
wide ranges, and the fraction of zero prices. A correct sample of 20 rows or the full 1.48M rows
passes; a batch in cents (x100) fails the median/mean ranges, a batch of zeros fails the zero-price
fraction (and has no positive price to take a median of).

A rule GE cannot evaluate at all (a missing column, an unusable dtype) is reported as a failed
critical outcome whatever its suite: nothing it should have checked was checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from price_alchemy import schema
from price_alchemy.params import ValidationParams
from price_alchemy.validation.gx_context import import_gx

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations import Expectation

ROWS_SUITE = "listings_rows"
BATCH_SUITE = "listings_batch"
ROW_SEVERITY = "warning"
BATCH_SEVERITY = "critical"
DUPLICATE_ID_RULE = "listing_id_unique"


def _meta(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "description": description}


def _row_expectations(params: ValidationParams, require_price: bool) -> list[Expectation]:
    """Rules a single listing must meet; GE reports the index of each row that breaks one."""
    e = import_gx().expectations
    sev = ROW_SEVERITY
    price_max = f"{params.max_price:g}"
    rules: list[Expectation] = [
        # GE flags every occurrence of a duplicated id; the runner keeps the first and
        # quarantines the later ones.
        e.ExpectColumnValuesToBeUnique(
            column=schema.LISTING_ID, severity=sev, meta=_meta(DUPLICATE_ID_RULE, "duplicate listing_id")
        ),
        e.ExpectColumnValuesToBeInSet(
            column="item_condition_id",
            value_set=list(schema.CONDITIONS),
            severity=sev,
            meta=_meta(
                "item_condition_id_in_set",
                f"item_condition_id not in {schema.CONDITIONS[0]}..{schema.CONDITIONS[-1]}",
            ),
        ),
        e.ExpectColumnValuesToBeInSet(
            column="shipping",
            value_set=list(schema.SHIPPING_VALUES),
            severity=sev,
            meta=_meta("shipping_in_set", "shipping not in {0, 1}"),
        ),
    ]
    if require_price:
        rules.append(
            e.ExpectColumnValuesToNotBeNull(
                column=schema.PRICE, severity=sev, meta=_meta("price_present", "price missing")
            )
        )
    # Null prices are skipped by map rules, so this also holds for test-format files.
    rules.append(
        e.ExpectColumnValuesToBeBetween(
            column=schema.PRICE,
            min_value=0,
            max_value=params.max_price,
            severity=sev,
            meta=_meta("price_in_range", f"price not in 0..{price_max}"),
        )
    )
    rules += [
        e.ExpectColumnValuesToNotBeNull(
            column="name", severity=sev, meta=_meta("name_present", "name missing")
        ),
        e.ExpectColumnValuesToMatchRegex(
            column="name", regex=r"\S", severity=sev, meta=_meta("name_not_blank", "name blank")
        ),
        # Missing category is allowed: map rules skip nulls.
        e.ExpectColumnValuesToMatchRegex(
            column="category_name",
            regex=schema.CATEGORY_PATTERN,
            severity=sev,
            meta=_meta("category_name_shape", "category_name not shaped a/b/c"),
        ),
    ]
    for column, max_len in (
        ("name", schema.NAME_MAX_LEN),
        ("category_name", schema.CATEGORY_MAX_LEN),
        ("brand_name", schema.BRAND_MAX_LEN),
        ("item_description", schema.DESCRIPTION_MAX_LEN),
    ):
        rules.append(
            e.ExpectColumnValueLengthsToBeBetween(
                column=column,
                max_value=max_len,
                severity=sev,
                meta=_meta(f"{column}_length", f"{column} longer than {max_len}"),
            )
        )
    return rules


def _batch_expectations(params: ValidationParams, require_price: bool) -> list[Expectation]:
    """Properties of the whole batch; any failure fails the batch."""
    e = import_gx().expectations
    from great_expectations.expectations.row_conditions import Column

    sev = BATCH_SEVERITY
    rules: list[Expectation] = [
        e.ExpectTableColumnsToMatchSet(
            column_set=list(schema.LISTING_COLUMNS),
            exact_match=True,
            severity=sev,
            meta=_meta("columns_match", "columns are exactly " + ", ".join(schema.LISTING_COLUMNS)),
        ),
        e.ExpectTableRowCountToBeBetween(
            min_value=params.min_rows,
            severity=sev,
            meta=_meta("min_rows", f"at least {params.min_rows} rows"),
        ),
    ]
    for column, dtype in schema.DTYPES.items():
        rules.append(
            e.ExpectColumnTypeToBe(
                column=column,
                type_=dtype,
                severity=sev,
                meta=_meta(f"{column}_dtype", f"{column} is {dtype}"),
            )
        )
    for column, max_missing in params.max_missing.items():
        rules.append(
            e.ExpectColumnValuesToNotBeNull(
                column=column,
                mostly=max(0.0, 1.0 - max_missing),
                severity=sev,
                meta=_meta(
                    f"{column}_missing_rate", f"{column} missing in at most {max_missing:.0%} of rows"
                ),
            )
        )
    if require_price:
        # Rows the row rules quarantine (price above max_price) must not skew the batch statistics.
        positive = (Column(schema.PRICE) > 0) & (Column(schema.PRICE) <= params.max_price)
        low, high = params.price_median_range
        rules.append(
            e.ExpectColumnMedianToBeBetween(
                column=schema.PRICE,
                min_value=low,
                max_value=high,
                row_condition=positive,
                severity=sev,
                meta=_meta("price_median", f"median of prices in (0, max_price] within {low:g}..{high:g}"),
            )
        )
        low, high = params.price_mean_range
        rules.append(
            e.ExpectColumnMeanToBeBetween(
                column=schema.PRICE,
                min_value=low,
                max_value=high,
                row_condition=positive,
                severity=sev,
                meta=_meta("price_mean", f"mean of prices in (0, max_price] within {low:g}..{high:g}"),
            )
        )
        rules.append(
            e.ExpectColumnValuesToNotBeInSet(
                column=schema.PRICE,
                value_set=[0.0],
                mostly=1.0 - params.max_zero_price_fraction,
                severity=sev,
                meta=_meta(
                    "price_zero_fraction",
                    f"zero prices in at most {params.max_zero_price_fraction:.0%} of rows",
                ),
            )
        )
    return rules


def build_suites(
    params: ValidationParams, *, require_price: bool = True
) -> tuple[ExpectationSuite, ExpectationSuite]:
    """Return the (rows, batch) suites for these parameters; ``require_price=False`` for test-format files."""
    gx = import_gx()
    rows = gx.ExpectationSuite(name=ROWS_SUITE, expectations=_row_expectations(params, require_price))
    batch = gx.ExpectationSuite(name=BATCH_SUITE, expectations=_batch_expectations(params, require_price))
    return rows, batch
