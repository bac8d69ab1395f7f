"""How the contract reads values from text: the accepted shapes, the digit limits of the column
types, and the parsing every check shares.

Pure Polars expressions with no rules from settings: `validate` applies the configured limits
(ranges, time zone, a custom timestamp format) on top of what these read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from salesflow.contract import MONEY

# A whole number; "3.0" (as a float-typed column writes 3) is exact, "2.5" is not.
QUANTITY_PATTERN: Final = r"^[+-]?\d+(\.0+)?$"
QUANTITY_MAX_DIGITS: Final = 18  # what BIGINT holds
# At most 14 integer digits and 4 decimals: what DECIMAL(18,4) holds without rounding.
PRICE_PATTERN: Final = r"^[+-]?\d+(\.\d{1,4})?$"
PRICE_MAX_DIGITS: Final = 14  # integer digits DECIMAL(18,4) holds
TIMESTAMP_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)

# The shape most timestamps have (naive, `T`, seconds): `validate.parse_order_ts` tries it first.
COMMON_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f"


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Trimmed, with an empty result as null: how every check sees a value."""
    trimmed = expr.str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def normalised_columns(raw: pl.DataFrame, input_columns: Sequence[str]) -> dict[str, pl.Expr]:
    """Each input column trimmed, with a blank value as null: what every check compares.

    A column none of whose values would change is used as it is, which spares copying every
    string of a clean batch (the common case) once for the checks and once for the duplicates.
    """
    if not input_columns or raw.is_empty():
        return {name: blank_to_null(pl.col(name)) for name in input_columns}
    untouched = raw.select(
        _would_change(pl.col(name)).any().not_().alias(name) for name in input_columns
    ).row(0, named=True)
    return {
        name: pl.col(name) if untouched[name] else blank_to_null(pl.col(name))
        for name in input_columns
    }


def _would_change(value: pl.Expr) -> pl.Expr:
    """Trimming shortens it, or it is empty (so `blank_to_null` makes it null)."""
    length = value.str.len_bytes()
    return (value.str.strip_chars().str.len_bytes() != length) | (length == 0)


def parsed_values() -> list[pl.Expr]:
    """`_quantity` and `_unit_price` typed from their text (null where the text is no such
    value), and whether each is well-formed but too large for its column type."""
    quantity_ok = pl.col("quantity").str.contains(QUANTITY_PATTERN)
    price_ok = pl.col("unit_price").str.contains(PRICE_PATTERN)
    # Well-formed but too many digits for the column type: out of range, not a bad type.
    quantity_huge = quantity_ok & _more_integer_digits("quantity", QUANTITY_MAX_DIGITS)
    price_huge = price_ok & _more_integer_digits("unit_price", PRICE_MAX_DIGITS)
    return [
        pl.when(quantity_ok & ~quantity_huge)
        .then(pl.col("quantity").str.replace(r"\.0+$", "").cast(pl.Int64, strict=False))
        .alias("_quantity"),
        pl.when(price_ok & ~price_huge)
        .then(pl.col("unit_price").cast(MONEY, strict=False))
        .alias("_unit_price"),
        quantity_huge.fill_null(False).alias("_quantity_huge"),
        price_huge.fill_null(False).alias("_price_huge"),
    ]


def _more_integer_digits(column: str, digits: int) -> pl.Expr:
    """More than `digits` integer digits, leading zeros aside (one regex test, no extraction)."""
    return pl.col(column).str.contains(rf"^[+-]?0*[1-9]\d{{{digits}}}")


def parse_timestamp(text: pl.Expr, timezone: str) -> pl.Expr:
    """ISO 8601 date or timestamp -> naive timestamp in the shop's time zone; else null.

    Timestamps with an offset (or Z) are converted to the shop's zone; naive ones are taken as
    already in it. Calendar-invalid dates (2024-02-30) become null.
    """
    shape_ok = text.str.contains(TIMESTAMP_PATTERN)
    normal = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T").str.replace(r"Z$", "+00:00")
    naive_formats = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
    offset_formats = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
    naive = [
        normal.str.to_datetime(fmt, time_unit="us", strict=False, exact=True)
        for fmt in naive_formats
    ]
    aware = [
        normal.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False, exact=True)
        .dt.convert_time_zone(timezone)
        .dt.replace_time_zone(None)
        for fmt in offset_formats
    ]
    return pl.when(shape_ok).then(pl.coalesce(*naive, *aware))
