"""Validation: split one batch into rows that honour the contract and rows quarantined with reasons.

Pure and vectorised: no I/O, no Prefect. Every input row comes out exactly once, either typed in
`valid` or, with its reason codes and the record as read, in `rejected`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from salesflow.config import Settings
from salesflow.contract import (
    CANONICAL_COLUMNS,
    FIELD_COUNT,
    INTERNAL_COLUMNS,
    RECORD_TEXT,
    SOURCE_ROW,
    Reason,
)
from salesflow.value_parsing import (
    COMMON_TIMESTAMP_FORMAT,
    TIMESTAMP_PATTERN,
    normalised_columns,
    parse_timestamp,
    parsed_values,
)

VALID_COLUMNS: Final = (*CANONICAL_COLUMNS, "source_row")
REJECTED_COLUMNS: Final = ("source_row", "reasons", "raw")


@dataclass(frozen=True)
class ValidationRules:
    """The tunable parts of the contract, taken from settings.

    `not_after` is the latest accepted order_ts (naive, shop time, counted from the next whole
    hour); None disables the check.
    It is fixed by the caller, so validation stays a pure function of its inputs.
    """

    timezone: str = "UTC"
    max_quantity: int = 100_000
    max_unit_price: Decimal = Decimal(1_000_000)
    timestamp_format: str | None = None
    min_order_date: date = date(2000, 1, 1)
    not_after: datetime | None = None
    regions: frozenset[str] | None = None
    max_field_length: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, now: datetime | None = None) -> ValidationRules:
        """Rules for a run starting `now` (default: the current time)."""
        zone = ZoneInfo(settings.timezone)
        current = (now or datetime.now(UTC)).astimezone(zone).replace(tzinfo=None)
        # Up to the next whole hour: the rules, and so the cache keys of validated batches,
        # hold for an hour, and the check is never stricter than configured.
        hour = current.replace(minute=0, second=0, microsecond=0)
        current = hour if hour == current else hour + timedelta(hours=1)
        return cls(
            timezone=settings.timezone,
            max_quantity=settings.max_quantity,
            max_unit_price=settings.max_unit_price,
            timestamp_format=settings.timestamp_format,
            min_order_date=settings.min_order_date,
            not_after=current + timedelta(hours=settings.future_tolerance_hours),
            regions=frozenset(settings.regions) if settings.regions is not None else None,
            max_field_length=settings.max_field_length,
        )


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


def count_odd_but_valid(valid: pl.DataFrame) -> dict[str, int]:
    """Valid rows worth a warning: free items (price 0) and returns; only kinds that occur."""
    counts = valid.select(
        (pl.col("unit_price") == 0).sum().alias("zero_price"),
        (pl.col("quantity") < 0).sum().alias("returns"),
    ).row(0, named=True)
    return {kind: int(count) for kind, count in counts.items() if count}


def validate_batch(
    raw: pl.DataFrame,
    column_map: Mapping[str, str],
    batch_id: str,
    rules: ValidationRules | None = None,
) -> ValidationResult:
    """Check every row of a text-typed batch against the contract.

    `raw` is a staged batch: the file's own columns as text plus SOURCE_ROW. `column_map` maps
    canonical names to the file's (see sources.files.map_columns). A row without an order_id
    column gets a deterministic one from the batch and its row number. A JSON Lines line that
    was no object (RECORD_TEXT set) is rejected as `malformed_record`, its line kept as `raw`.
    """
    rules = rules or ValidationRules()
    input_columns = [name for name in raw.columns if name not in INTERNAL_COLUMNS]
    if FIELD_COUNT not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.Int32).alias(FIELD_COUNT))
    malformed = RECORD_TEXT in raw.columns and raw.get_column(RECORD_TEXT).is_not_null().any()
    if not malformed:  # only a JSON Lines batch with a bad line has record texts
        raw = raw.drop(RECORD_TEXT, strict=False)
    normalised = normalised_columns(raw, input_columns)
    # Keep the record as read before canonical columns (which may share its names) replace it.
    checked = (
        raw.with_columns(
            _as_read(input_columns).alias("_as_read"),
            _is_later_copy(input_columns, normalised, malformed).alias("_duplicate"),
            *_record_problems(input_columns, rules, malformed),
        )
        .with_columns(_canonical_text(column_map, batch_id, normalised))
        .with_columns(parsed_values())
    )
    checked = checked.with_columns(parse_order_ts(checked.get_column("order_ts"), rules))
    checked = checked.with_columns(_reasons(rules, len(input_columns), malformed).alias("reasons"))
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
        _raw_json(malformed).alias("raw"),
    )
    return ValidationResult(valid=valid, rejected=rejected)


def _canonical_text(
    column_map: Mapping[str, str], batch_id: str, normalised: Mapping[str, pl.Expr]
) -> list[pl.Expr]:
    """Trimmed text of each canonical column; absent optional columns are null."""
    expressions = []
    for canonical in CANONICAL_COLUMNS:
        if canonical in column_map:
            expressions.append(normalised[column_map[canonical]].alias(canonical))
        elif canonical == "order_id":
            derived = pl.concat_str(pl.lit(f"{batch_id}#"), pl.col(SOURCE_ROW).cast(pl.String))
            expressions.append(derived.alias("order_id"))
        else:
            expressions.append(pl.lit(None, dtype=pl.String).alias(canonical))
    return expressions


def _is_later_copy(
    input_columns: Sequence[str], normalised: Mapping[str, pl.Expr], malformed: bool
) -> pl.Expr:
    """True on the second and later exact copies of a record (compared after trimming, with a
    blank value equal to an empty one, as every check sees them). A malformed line's fields are
    all null, so its text takes part: it is no copy of `{}` nor of another malformed line."""
    fields = [normalised[name].alias(name) for name in input_columns]
    if malformed:
        fields.append(pl.col(RECORD_TEXT))
    if not fields:
        return pl.lit(False)
    return ~pl.struct(fields).is_first_distinct()


def _record_problems(
    input_columns: Sequence[str], rules: ValidationRules, malformed: bool
) -> list[pl.Expr]:
    """Whole-record flags: undecodable bytes (read as U+FFFD) or NUL, in a field or in a
    malformed line, and over-long fields."""
    texts = [pl.col(name) for name in input_columns]
    if malformed:
        texts.append(pl.col(RECORD_TEXT))
    if not texts:
        return [pl.lit(False).alias("_bad_encoding"), pl.lit(False).alias("_too_long")]
    columns = [pl.col(name) for name in input_columns]
    bad_bytes = pl.any_horizontal([c.str.contains("[\ufffd\x00]") for c in texts])
    too_long = pl.any_horizontal(
        [c.str.len_chars() > rules.max_field_length for c in columns] or [pl.lit(False)]
    )
    return [
        bad_bytes.fill_null(False).alias("_bad_encoding"),
        too_long.fill_null(False).alias("_too_long"),
    ]


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


def parse_order_ts(text: pl.Series, rules: ValidationRules) -> pl.Series:
    """The `_order_ts` column: `parse_timestamp` of the trimmed order_ts text, or the configured
    `timestamp_format` where ISO 8601 does not read it.

    Same values as evaluating `parse_timestamp` on every row, faster: the common shape is
    parsed first, and the five accepted shapes are tried only on the rows it did not read.
    """
    frame = text.to_frame("order_ts")
    iso = pl.col("order_ts")
    shape_ok = iso.str.contains(TIMESTAMP_PATTERN)
    # Text the common format reads has no space to normalise and no offset, so the value is
    # the one parse_timestamp's first format gives it.
    common = iso.str.to_datetime(COMMON_TIMESTAMP_FORMAT, time_unit="us", strict=False, exact=True)
    parsed = frame.select(
        pl.when(shape_ok).then(common).alias("_order_ts"),
        (shape_ok & common.is_null()).fill_null(False).alias("_other_shape"),
    )
    order_ts = parsed.get_column("_order_ts")
    others = parsed.get_column("_other_shape").arg_true()
    if others.len():
        rest = frame[others].select(parse_timestamp(iso, rules.timezone))
        order_ts = order_ts.scatter(others, rest.to_series())
    if rules.timestamp_format:
        order_ts = (
            pl.DataFrame({"_order_ts": order_ts, "order_ts": text})
            .select(pl.coalesce("_order_ts", _custom_timestamp(rules)))
            .to_series()
        )
    return order_ts.alias("_order_ts")


def _reasons(rules: ValidationRules, header_fields: int, malformed: bool) -> pl.Expr:
    """Every reason code that applies to a row, in contract order.

    A malformed line has no fields to check: it carries `malformed_record` (and
    `bad_encoding` when its text holds such bytes), never reasons about values it lacks.
    """
    order_ts = pl.col("_order_ts")
    checks: list[tuple[pl.Expr, Reason]] = [
        (pl.col(FIELD_COUNT) != header_fields, Reason.RAGGED_ROW),
        (pl.col("_bad_encoding"), Reason.BAD_ENCODING),
        (pl.col("_too_long"), Reason.FIELD_TOO_LONG),
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
        (
            (pl.col("_quantity").abs() > rules.max_quantity) | pl.col("_quantity_huge"),
            Reason.QUANTITY_OUT_OF_RANGE,
        ),
        (
            (pl.col("_unit_price") > rules.max_unit_price) | pl.col("_price_huge"),
            Reason.PRICE_OUT_OF_RANGE,
        ),
        (order_ts.dt.date() < rules.min_order_date, Reason.BEFORE_MIN_DATE),
        (
            order_ts > rules.not_after if rules.not_after is not None else pl.lit(False),
            Reason.FUTURE_DATE,
        ),
        (
            ~pl.col("region").is_in(sorted(rules.regions)) & pl.col("region").is_not_null()
            if rules.regions is not None
            else pl.lit(False),
            Reason.UNKNOWN_REGION,
        ),
        (pl.col("_duplicate"), Reason.DUPLICATE),
    ]
    if malformed:
        is_malformed = pl.col(RECORD_TEXT).is_not_null()
        checks = [
            (condition if code == Reason.BAD_ENCODING else condition & ~is_malformed, code)
            for condition, code in checks
        ]
        checks.insert(1, (is_malformed, Reason.MALFORMED_RECORD))
    flagged = [
        pl.when(condition.fill_null(False)).then(pl.lit(str(code))) for condition, code in checks
    ]
    return pl.concat_list(flagged).list.drop_nulls()


def _unparsed(column: str) -> pl.Expr:
    """Present as text, but not a value of the contract's type (too large is out of range)."""
    huge = {"quantity": "_quantity_huge", "unit_price": "_price_huge"}.get(column)
    unparsed = pl.col(column).is_not_null() & pl.col(f"_{column}").is_null()
    return unparsed & ~pl.col(huge) if huge else unparsed


def _as_read(input_columns: Sequence[str]) -> pl.Expr:
    """The record as read, keyed by the file's own headers (JSON-encoded only when rejected)."""
    return pl.struct([pl.col(name) for name in input_columns])


def _raw_json(malformed: bool) -> pl.Expr:
    """`raw` of a rejected row: the record as read as a JSON object; for a malformed line, its
    text as a JSON string, so `raw` stays JSON for whoever queries it and decodes to the line.
    """
    record = pl.col("_as_read").struct.json_encode()
    if not malformed:
        return record
    # {"__record_text": "<line>"} -> "<line>", encoded by Polars (vectorised).
    prefix = len(json.dumps(RECORD_TEXT)) + 2
    line = pl.struct(RECORD_TEXT).struct.json_encode().str.slice(prefix).str.head(-1)
    return pl.when(pl.col(RECORD_TEXT).is_not_null()).then(line).otherwise(record)
