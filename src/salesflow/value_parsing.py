"""How the contract reads values from text: the accepted shapes, the digit limits of the column
types, and the timestamp parsing that stays in Polars.

The shapes are RE2 patterns for DuckDB (`validate_sql`), with Rust's Unicode `\\d` spelled
`\\p{Nd}`, so a value reads the same as it did when Polars applied them. Timestamps outside the
common shape, and any configured `timestamp_format`, are parsed by chrono (`parse_order_ts`),
called from the SQL on just the rows that need it.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from salesflow.rules import ValidationRules

_DIGIT: Final = r"\p{Nd}"
QUANTITY_MAX_DIGITS: Final = 18  # what BIGINT holds
PRICE_MAX_DIGITS: Final = 14  # integer digits DECIMAL(18,4) holds

# A whole number; "3.0" (as a float-typed column writes 3) is exact, "2.5" is not.
QUANTITY_PATTERN: Final = rf"^[+-]?{_DIGIT}+(\.0+)?$"
# At most 14 integer digits and 4 decimals: what DECIMAL(18,4) holds without rounding.
PRICE_PATTERN: Final = rf"^[+-]?{_DIGIT}+(\.{_DIGIT}{{1,4}})?$"
# Well-formed but more integer digits (leading zeros aside) than the column type holds: out of
# range, not a bad type.
QUANTITY_TOO_LONG: Final = rf"^[+-]?0*[1-9]{_DIGIT}{{{QUANTITY_MAX_DIGITS}}}"
PRICE_TOO_LONG: Final = rf"^[+-]?0*[1-9]{_DIGIT}{{{PRICE_MAX_DIGITS}}}"

# The accepted timestamp shapes (Polars syntax: `\d` is any Unicode digit, as chrono sees it).
TIMESTAMP_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)
# The common shape, which DuckDB's cast reads exactly as chrono's `%Y-%m-%dT%H:%M:%S%.f` does:
# ASCII digits, hours 00-23 and seconds 00-59 (DuckDB takes 24:00 as the next day, chrono a leap
# second :60 as the next minute). Everything else goes to `parse_order_ts`.
COMMON_TIMESTAMP_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?$"
)
_COMMON_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f"


def parse_timestamp(text: pl.Expr, timezone: str) -> pl.Expr:
    """ISO 8601 date or timestamp -> naive timestamp in the shop's time zone; else null.

    Timestamps with an offset (or Z) are converted to the shop's zone; naive ones are taken as
    already in it. Calendar-invalid dates (2024-02-30) become null.
    """
    shape_ok = text.str.contains(TIMESTAMP_PATTERN)
    normal = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T").str.replace(r"Z$", "+00:00")
    naive_formats = (_COMMON_TIMESTAMP_FORMAT, "%Y-%m-%dT%H:%M", "%Y-%m-%d")
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


def parse_order_ts(text: pl.Series, rules: ValidationRules) -> pl.Series:
    """order_ts values of trimmed text: `parse_timestamp`, or the configured `timestamp_format`
    where ISO 8601 does not read the text."""
    frame = text.to_frame("order_ts")
    order_ts = frame.select(parse_timestamp(pl.col("order_ts"), rules.timezone)).to_series()
    if rules.timestamp_format:
        order_ts = (
            pl.DataFrame({"_order_ts": order_ts, "order_ts": text})
            .select(pl.coalesce("_order_ts", _custom_timestamp(rules)))
            .to_series()
        )
    return order_ts.alias("_order_ts")


def _custom_timestamp(rules: ValidationRules) -> pl.Expr:
    """order_ts in the configured format; with an offset (%z) converted to the shop's zone."""
    assert rules.timestamp_format is not None
    if "%z" in rules.timestamp_format or "%#z" in rules.timestamp_format:
        return (
            pl.col("order_ts")
            .str.to_datetime(
                rules.timestamp_format, time_unit="us", time_zone="UTC", strict=False, exact=True
            )
            .dt.convert_time_zone(rules.timezone)
            .dt.replace_time_zone(None)
        )
    return pl.col("order_ts").str.to_datetime(
        rules.timestamp_format, time_unit="us", strict=False, exact=True
    )
