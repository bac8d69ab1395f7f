"""Validation: split one batch into rows that honour the contract and rows quarantined with reasons.

Pure and vectorised: no I/O, no Prefect. Every input row comes out exactly once, either typed in
`valid` or, with its reason codes and the record as read, in `rejected`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import polars as pl

from salesflow.config import Settings
from salesflow.contract import CANONICAL_COLUMNS, MONEY, Reason
from salesflow.sources.files import SOURCE_ROW

QUANTITY_PATTERN: Final = r"^[+-]?\d{1,18}$"
# At most 14 integer digits and 4 decimals: what DECIMAL(18,4) holds without rounding.
PRICE_PATTERN: Final = r"^[+-]?\d{1,14}(\.\d{1,4})?$"
TIMESTAMP_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)

VALID_COLUMNS: Final = (*CANONICAL_COLUMNS, "source_row")
REJECTED_COLUMNS: Final = ("source_row", "reasons", "raw")


@dataclass(frozen=True)
class ValidationRules:
    """The tunable parts of the contract, taken from settings."""

    timezone: str = "UTC"
    max_quantity: int = 100_000
    max_unit_price: Decimal = Decimal(1_000_000)

    @classmethod
    def from_settings(cls, settings: Settings) -> ValidationRules:
        return cls(settings.timezone, settings.max_quantity, settings.max_unit_price)


@dataclass(frozen=True)
class ValidationResult:
    """One batch, split. `valid` has VALID_COLUMNS typed; `rejected` has REJECTED_COLUMNS."""

    valid: pl.DataFrame
    rejected: pl.DataFrame

    def reason_counts(self) -> dict[str, int]:
        """How many rejected rows carry each reason code (a row may carry several)."""
        return count_reasons(self.rejected)


def count_reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.is_empty():
        return {}
    counts = rejected.select(pl.col("reasons").explode()).to_series().value_counts(sort=True)
    return {str(code): int(count) for code, count in counts.iter_rows()}


def validate_batch(
    raw: pl.DataFrame,
    column_map: Mapping[str, str],
    batch_id: str,
    rules: ValidationRules | None = None,
) -> ValidationResult:
    """Check every row of a text-typed batch against the contract.

    `raw` is a staged batch: the file's own columns as text plus SOURCE_ROW. `column_map` maps
    canonical names to the file's (see sources.files.map_columns). A row without an order_id
    column gets a deterministic one from the batch and its row number.
    """
    rules = rules or ValidationRules()
    input_columns = [name for name in raw.columns if name != SOURCE_ROW]
    # Keep the record as read before canonical columns (which may share its names) replace it.
    checked = (
        raw.with_columns(
            _as_read(input_columns).alias("_as_read"),
            _is_later_copy(input_columns).alias("_duplicate"),
        )
        .with_columns(_canonical_text(column_map, batch_id))
        .with_columns(_parsed(rules))
    )
    checked = checked.with_columns(_reasons(rules).alias("reasons"))
    is_valid = pl.col("reasons").list.len() == 0
    valid = checked.filter(is_valid).select(
        "order_id",
        "_order_ts",
        "customer_id",
        "sku",
        "product",
        "category",
        "_quantity",
        "_unit_price",
        "region",
        pl.col(SOURCE_ROW).alias("source_row"),
    )
    valid = valid.rename(
        {"_order_ts": "order_ts", "_quantity": "quantity", "_unit_price": "unit_price"}
    )
    rejected = checked.filter(~is_valid).select(
        pl.col(SOURCE_ROW).alias("source_row"),
        "reasons",
        pl.col("_as_read").struct.json_encode().alias("raw"),
    )
    return ValidationResult(valid=valid, rejected=rejected)


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    trimmed = expr.str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def _canonical_text(column_map: Mapping[str, str], batch_id: str) -> list[pl.Expr]:
    """Trimmed text of each canonical column; absent optional columns are null."""
    expressions = []
    for canonical in CANONICAL_COLUMNS:
        if canonical in column_map:
            expressions.append(_blank_to_null(pl.col(column_map[canonical])).alias(canonical))
        elif canonical == "order_id":
            derived = pl.concat_str(pl.lit(f"{batch_id}#"), pl.col(SOURCE_ROW).cast(pl.String))
            expressions.append(derived.alias("order_id"))
        else:
            expressions.append(pl.lit(None, dtype=pl.String).alias(canonical))
    return expressions


def _is_later_copy(input_columns: Sequence[str]) -> pl.Expr:
    """True on the second and later exact copies of a record (compared after trimming, with a
    blank value equal to an empty one, as every check sees them)."""
    if not input_columns:
        return pl.lit(False)
    normalised = [_blank_to_null(pl.col(name)).alias(name) for name in input_columns]
    return ~pl.struct(normalised).is_first_distinct()


def _parsed(rules: ValidationRules) -> list[pl.Expr]:
    quantity_ok = pl.col("quantity").str.contains(QUANTITY_PATTERN)
    price_ok = pl.col("unit_price").str.contains(PRICE_PATTERN)
    return [
        pl.when(quantity_ok)
        .then(pl.col("quantity").cast(pl.Int64, strict=False))
        .alias("_quantity"),
        pl.when(price_ok).then(pl.col("unit_price").cast(MONEY, strict=False)).alias("_unit_price"),
        parse_timestamp(pl.col("order_ts"), rules.timezone).alias("_order_ts"),
    ]


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


def _reasons(rules: ValidationRules) -> pl.Expr:
    """Every reason code that applies to a row, in contract order."""
    checks: list[tuple[pl.Expr, Reason]] = [
        (pl.col("order_id").is_null(), Reason.MISSING_ORDER_ID),
        (pl.col("sku").is_null(), Reason.MISSING_SKU),
        (pl.col("order_ts").is_null(), Reason.MISSING_ORDER_TS),
        (pl.col("quantity").is_null(), Reason.MISSING_QUANTITY),
        (pl.col("unit_price").is_null(), Reason.MISSING_UNIT_PRICE),
        (pl.col("region").is_null(), Reason.MISSING_REGION),
        (_unparsed("order_ts"), Reason.BAD_TYPE_ORDER_TS),
        (_unparsed("quantity"), Reason.BAD_TYPE_QUANTITY),
        (_unparsed("unit_price"), Reason.BAD_TYPE_UNIT_PRICE),
        (pl.col("_quantity") == 0, Reason.ZERO_QUANTITY),
        (pl.col("_unit_price") < 0, Reason.NEGATIVE_PRICE),
        (pl.col("_quantity").abs() > rules.max_quantity, Reason.QUANTITY_OUT_OF_RANGE),
        (pl.col("_unit_price") > rules.max_unit_price, Reason.PRICE_OUT_OF_RANGE),
        (pl.col("_duplicate"), Reason.DUPLICATE),
    ]
    flagged = [
        pl.when(condition.fill_null(False)).then(pl.lit(str(code))) for condition, code in checks
    ]
    return pl.concat_list(flagged).list.drop_nulls()


def _unparsed(column: str) -> pl.Expr:
    """Present as text, but not a value of the contract's type."""
    return pl.col(column).is_not_null() & pl.col(f"_{column}").is_null()


def _as_read(input_columns: Sequence[str]) -> pl.Expr:
    """The record as read, keyed by the file's own headers (JSON-encoded only when rejected)."""
    return pl.struct([pl.col(name) for name in input_columns])
