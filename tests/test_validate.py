"""Tests of validation: every row comes out once, typed in `valid` or rejected with its reasons."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from salesflow.config import Settings
from salesflow.contract import (
    CANONICAL_COLUMNS,
    FIELD_COUNT,
    MONEY,
    REASON_DESCRIPTIONS,
    RECORD_TEXT,
    REQUIRED_VALUES,
    SOURCE_ROW,
    Reason,
)
from salesflow.rules import ValidationRules
from salesflow.sources.files import map_columns
from salesflow.validate import REJECTED_COLUMNS, VALID_COLUMNS, count_reasons, validate_batch
from salesflow.value_parsing import parse_timestamp

BATCH = "sales_2024-01-05.csv"
IDENTITY = {column: column for column in CANONICAL_COLUMNS}
COURSE_HEADER = ["fecha", "producto", "cantidad", "precio_unitario", "region"]
VALID_SCHEMA = {
    "order_id": pl.String,
    "order_ts": pl.Datetime("us"),
    "customer_id": pl.String,
    "sku": pl.String,
    "product": pl.String,
    "category": pl.String,
    "quantity": pl.Int64,
    "unit_price": MONEY,
    "region": pl.String,
    "source_row": pl.Int64,
}
REJECTED_SCHEMA = {"source_row": pl.Int64, "reasons": pl.List(pl.String), "raw": pl.String}
CONTRACT_ORDER = [str(reason) for reason in Reason]


def record(n: int = 1, **changes: str | None) -> dict[str, str | None]:
    """A clean canonical record (order id A<n>), with some values replaced."""
    base: dict[str, str | None] = {
        "order_id": f"A{n}",
        "order_ts": "2024-01-05T10:30:00",
        "customer_id": "C1",
        "sku": "SKU-1",
        "product": "Laptop",
        "category": "Electronics",
        "quantity": "2",
        "unit_price": "10.5",
        "region": "North",
    }
    base.update(changes)
    return base


def raw_batch(
    records: list[dict[str, str | None]], field_counts: list[int | None] | None = None
) -> pl.DataFrame:
    """A staged batch as stage_source writes it: SOURCE_ROW first, then text columns, then
    FIELD_COUNT when given (a CSV batch); without it the batch looks like Parquet/JSONL."""
    columns = list(records[0])
    frame = pl.DataFrame(records, schema=dict.fromkeys(columns, pl.String), orient="row")
    if field_counts is not None:
        frame = frame.with_columns(pl.Series(FIELD_COUNT, field_counts, dtype=pl.Int32))
    return frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )


def reasons_by_row(rejected: pl.DataFrame) -> dict[int, list[str]]:
    return dict(rejected.select("source_row", "reasons").iter_rows())


def validate_one(rules: ValidationRules | None = None, **changes: str | None):
    """Validate a single record; return (valid frame, reasons of the row or None)."""
    result = validate_batch(raw_batch([record(**changes)]), IDENTITY, BATCH, rules)
    assert result.valid.height + result.rejected.height == 1
    return result.valid, reasons_by_row(result.rejected).get(1)


# --- a clean record --------------------------------------------------------------------------


def test_clean_record_is_valid_with_contract_types_and_column_order() -> None:
    result = validate_batch(raw_batch([record()]), IDENTITY, BATCH)

    expected = pl.DataFrame(
        {
            "order_id": ["A1"],
            "order_ts": [dt.datetime(2024, 1, 5, 10, 30)],
            "customer_id": ["C1"],
            "sku": ["SKU-1"],
            "product": ["Laptop"],
            "category": ["Electronics"],
            "quantity": [2],
            "unit_price": [Decimal("10.5")],
            "region": ["North"],
            "source_row": [1],
        },
        schema=VALID_SCHEMA,
    )
    assert tuple(result.valid.columns) == VALID_COLUMNS
    assert_frame_equal(result.valid, expected)
    assert result.rejected.height == 0
    assert result.rejected.schema == pl.Schema(REJECTED_SCHEMA)


def test_empty_batch_gives_empty_typed_frames() -> None:
    raw = raw_batch([record()]).clear()

    result = validate_batch(raw, IDENTITY, BATCH)

    assert result.valid.schema == pl.Schema(VALID_SCHEMA)
    assert result.rejected.schema == pl.Schema(REJECTED_SCHEMA)
    assert tuple(result.rejected.columns) == REJECTED_COLUMNS
    assert result.valid.height == result.rejected.height == 0
    assert result.reason_counts() == {}


def test_values_are_trimmed_before_they_are_stored() -> None:
    valid, reasons = validate_one(
        order_id="  A1 ", sku="\tSKU-1 ", region=" North ", quantity=" 3 ", unit_price=" 4.25 "
    )

    assert reasons is None
    assert valid.select("order_id", "sku", "region", "quantity", "unit_price").row(0) == (
        "A1",
        "SKU-1",
        "North",
        3,
        Decimal("4.25"),
    )


@pytest.mark.parametrize("column", ["customer_id", "product", "category"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_optional_value_is_stored_as_null(column: str, blank: str | None) -> None:
    valid, reasons = validate_one(**{column: blank})

    assert reasons is None
    assert valid[column].to_list() == [None]


# --- missing values --------------------------------------------------------------------------


@pytest.mark.parametrize("column", REQUIRED_VALUES)
@pytest.mark.parametrize("blank", [None, "", "   ", "\t"])
def test_blank_required_value_is_rejected_as_missing(column: str, blank: str | None) -> None:
    valid, reasons = validate_one(**{column: blank})

    assert valid.height == 0
    assert reasons == [f"missing_{column}"]


# --- quantity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", 2),
        ("-3", -3),
        ("+5", 5),
        ("007", 7),
        (" 4 ", 4),
        ("100000", 100_000),
        ("-100000", -100_000),
        ("2.0", 2),  # what a float-typed column writes for 2: exact, so accepted
        ("3.00", 3),
        ("-1.0", -1),
    ],
)
def test_whole_quantity_is_accepted(text: str, expected: int) -> None:
    valid, reasons = validate_one(quantity=text)

    assert reasons is None
    assert valid["quantity"].to_list() == [expected]


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("2.5", ["bad_type:quantity"]),
        ("2.05", ["bad_type:quantity"]),
        ("2.", ["bad_type:quantity"]),
        (".0", ["bad_type:quantity"]),
        ("1e3", ["bad_type:quantity"]),
        ("1,000", ["bad_type:quantity"]),
        ("two", ["bad_type:quantity"]),
        ("0", ["zero_quantity"]),
        ("-0", ["zero_quantity"]),
        ("0.0", ["zero_quantity"]),
        ("100001", ["quantity_out_of_range"]),
        ("-100001", ["quantity_out_of_range"]),
        ("999999999999999999", ["quantity_out_of_range"]),
        # A whole number too big for 64 bits is still a whole number: out of range, not bad type.
        ("99999999999999999999", ["quantity_out_of_range"]),
        ("-99999999999999999999", ["quantity_out_of_range"]),
    ],
)
def test_bad_quantity_is_rejected_with_its_reason(text: str, reasons: list[str]) -> None:
    valid, got = validate_one(quantity=text)

    assert valid.height == 0
    assert got == reasons


# --- unit price ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.5", "10.5"),
        ("19.99", "19.99"),
        ("0", "0"),
        ("1.2345", "1.2345"),
        (" 3.5 ", "3.5"),
        ("1000000", "1000000"),
    ],
)
def test_plain_decimal_price_is_accepted_exactly(text: str, expected: str) -> None:
    valid, reasons = validate_one(unit_price=text)

    assert reasons is None
    assert valid["unit_price"].to_list() == [Decimal(expected)]
    assert valid.schema["unit_price"] == MONEY


@pytest.mark.parametrize("text", ["12,50", "1e3", "1.23456", "0.00001", "abc", "12.5€", "NaN"])
def test_unparseable_price_is_rejected_as_bad_type_without_rounding(text: str) -> None:
    valid, reasons = validate_one(unit_price=text)

    assert valid.height == 0
    assert reasons == ["bad_type:unit_price"]


def test_comma_decimal_price_is_rejected_as_bad_type() -> None:
    valid, reasons = validate_one(unit_price="12,50")

    assert valid.height == 0
    assert reasons == ["bad_type:unit_price"]


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("-1", ["negative_price"]),
        ("-0.0001", ["negative_price"]),
        ("1000000.0001", ["price_out_of_range"]),
        ("99999999999999.9999", ["price_out_of_range"]),
        # A plain decimal too wide for DECIMAL(18,4) is still a decimal: out of range.
        ("123456789012345678", ["price_out_of_range"]),
    ],
)
def test_price_out_of_bounds_is_rejected_with_its_reason(text: str, reasons: list[str]) -> None:
    valid, got = validate_one(unit_price=text)

    assert valid.height == 0
    assert got == reasons


def test_configured_maxima_are_inclusive_bounds() -> None:
    rules = ValidationRules(max_quantity=10, max_unit_price=Decimal("50"))
    records = [
        record(1, quantity="10", unit_price="50"),
        record(2, quantity="-10", unit_price="50.0000"),
        record(3, quantity="11"),
        record(4, quantity="-11"),
        record(5, unit_price="50.0001"),
        record(6, quantity="11", unit_price="51"),
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)

    assert result.valid["source_row"].to_list() == [1, 2]
    assert reasons_by_row(result.rejected) == {
        3: ["quantity_out_of_range"],
        4: ["quantity_out_of_range"],
        5: ["price_out_of_range"],
        6: ["quantity_out_of_range", "price_out_of_range"],
    }


NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


def test_rules_come_from_settings() -> None:
    configured = Settings(
        timezone="Europe/Madrid",
        max_quantity=7,
        max_unit_price=Decimal("9.5"),
        timestamp_format="%d/%m/%Y",
        min_order_date=dt.date(2010, 1, 1),
        future_tolerance_hours=2,
        regions=["North", "South"],
        max_field_length=50,
    )

    assert ValidationRules.from_settings(configured, now=NOW) == ValidationRules(
        timezone="Europe/Madrid",
        max_quantity=7,
        max_unit_price=Decimal("9.5"),
        timestamp_format="%d/%m/%Y",
        min_order_date=dt.date(2010, 1, 1),
        not_after=dt.datetime(2024, 6, 1, 16, 0),  # 14:00 in Madrid (CEST) + 2 h
        regions=frozenset({"North", "South"}),
        max_field_length=50,
    )


def test_default_settings_give_the_default_rules_with_a_day_of_tolerance() -> None:
    assert ValidationRules.from_settings(Settings(), now=NOW) == ValidationRules(
        not_after=dt.datetime(2024, 6, 2, 12, 0)
    )


@pytest.mark.parametrize(
    ("timezone", "tolerance", "now", "not_after"),
    [
        ("UTC", 24, NOW, dt.datetime(2024, 6, 2, 12, 0)),
        ("UTC", 0, NOW, dt.datetime(2024, 6, 1, 12, 0)),
        ("America/New_York", 0, NOW, dt.datetime(2024, 6, 1, 8, 0)),
        ("Asia/Tokyo", 0.5, NOW, dt.datetime(2024, 6, 1, 21, 30)),
        (
            "Europe/Madrid",
            0,
            dt.datetime(2024, 1, 1, 23, 30, tzinfo=dt.UTC),
            dt.datetime(2024, 1, 2, 1, 0),  # 00:30 Madrid, counted from the next whole hour
        ),
        (
            "UTC",
            1,
            dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
            dt.datetime(2024, 6, 1, 8, 0),
        ),
    ],
)
def test_not_after_is_the_next_whole_hour_in_the_shop_time_zone_plus_the_tolerance(
    timezone: str, tolerance: float, now: dt.datetime, not_after: dt.datetime
) -> None:
    configured = Settings(timezone=timezone, future_tolerance_hours=tolerance)

    assert ValidationRules.from_settings(configured, now=now).not_after == not_after


def test_now_defaults_to_the_current_time() -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    rules = ValidationRules.from_settings(Settings())

    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert rules.not_after is not None
    assert rules.not_after.minute == rules.not_after.second == rules.not_after.microsecond == 0
    latest = after + dt.timedelta(hours=25)
    assert before + dt.timedelta(hours=24) <= rules.not_after <= latest


def test_unset_regions_accept_any_region() -> None:
    assert ValidationRules.from_settings(Settings(), now=NOW).regions is None


# --- order timestamp -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05", dt.datetime(2024, 1, 5)),
        ("2024-02-29", dt.datetime(2024, 2, 29)),
        ("2024-01-05T10:30", dt.datetime(2024, 1, 5, 10, 30)),
        ("2024-01-05 10:30", dt.datetime(2024, 1, 5, 10, 30)),
        ("2024-01-05T10:30:15", dt.datetime(2024, 1, 5, 10, 30, 15)),
        ("2024-01-05 10:30:15", dt.datetime(2024, 1, 5, 10, 30, 15)),
        ("2024-01-05T10:30:15.5", dt.datetime(2024, 1, 5, 10, 30, 15, 500_000)),
        ("2024-01-05T10:30:15.123456", dt.datetime(2024, 1, 5, 10, 30, 15, 123_456)),
        ("2024-01-05T10:30:15Z", dt.datetime(2024, 1, 5, 10, 30, 15)),
        ("2024-01-05T10:30Z", dt.datetime(2024, 1, 5, 10, 30)),
        ("2024-01-05T10:30:15+02:00", dt.datetime(2024, 1, 5, 8, 30, 15)),
        ("2024-01-05 10:30:15.25+02:00", dt.datetime(2024, 1, 5, 8, 30, 15, 250_000)),
        ("2024-01-05T23:30:00-05:00", dt.datetime(2024, 1, 6, 4, 30)),
    ],
)
def test_iso_timestamp_is_parsed_to_naive_utc(text: str, expected: dt.datetime) -> None:
    valid, reasons = validate_one(order_ts=text)

    assert reasons is None
    assert valid["order_ts"].to_list() == [expected]
    assert valid.schema["order_ts"] == pl.Datetime("us")


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024-01-05T25:00",
        "2024-01-05T10:61",
        "05/01/2024",
        "2024/01/05",
        "2024-1-5",
        "20240105",
        "5 Jan 2024",
        "yesterday",
    ],
)
def test_non_iso_or_impossible_timestamp_is_rejected_as_bad_type(text: str) -> None:
    valid, reasons = validate_one(order_ts=text)

    assert valid.height == 0
    assert reasons == ["bad_type:order_ts"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05T10:30:00Z", dt.datetime(2024, 1, 5, 11, 30)),  # CET, UTC+1
        ("2024-07-05T10:30:00Z", dt.datetime(2024, 7, 5, 12, 30)),  # CEST, UTC+2
        ("2024-01-05T10:30:00+01:00", dt.datetime(2024, 1, 5, 10, 30)),
        ("2024-01-05T23:30:00-05:00", dt.datetime(2024, 1, 6, 5, 30)),
        ("2024-01-05T10:30:00", dt.datetime(2024, 1, 5, 10, 30)),  # naive: already local
        ("2024-01-05", dt.datetime(2024, 1, 5)),
    ],
)
def test_offset_timestamp_is_converted_to_the_shop_time_zone(
    text: str, expected: dt.datetime
) -> None:
    valid, reasons = validate_one(ValidationRules(timezone="Europe/Madrid"), order_ts=text)

    assert reasons is None
    assert valid["order_ts"].to_list() == [expected]
    assert valid.schema["order_ts"] == pl.Datetime("us")  # stored naive


# --- ragged records --------------------------------------------------------------------------


def test_csv_record_with_more_or_fewer_fields_than_the_header_is_ragged() -> None:
    records = [record(1), record(2, region=None), record(3), record(4), record(5)]
    counts = [9, 8, 10, 1, None]  # None: no field count (a Parquet or JSONL record)

    result = validate_batch(raw_batch(records, counts), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1, 5]
    assert reasons_by_row(result.rejected) == {
        2: ["ragged_row", "missing_region"],
        3: ["ragged_row"],
        4: ["ragged_row"],
    }


def test_header_width_counts_every_input_column_but_not_internal_ones() -> None:
    records = [record(1) | {"notes": "x"}, record(2) | {"notes": None}]

    result = validate_batch(raw_batch(records, [10, 9]), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1]
    assert reasons_by_row(result.rejected) == {2: ["ragged_row"]}


def with_record_text(batch: pl.DataFrame, texts: list[str | None]) -> pl.DataFrame:
    """A staged JSON Lines batch: RECORD_TEXT holds the lines that were no JSON object."""
    return batch.with_columns(pl.Series(RECORD_TEXT, texts, dtype=pl.String))


def test_malformed_line_carries_only_its_own_reasons_and_its_text_as_raw() -> None:
    empty = dict.fromkeys(record(), None)
    records = [record(1), empty, empty, empty, record(5)]
    texts = [None, '{"order_id": "A2", "order_ts', "caf\ufffd", "[1,\x00]", None]

    result = validate_batch(with_record_text(raw_batch(records), texts), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1, 5]
    assert result.rejected.rows() == [
        (2, ["malformed_record"], '"{\\"order_id\\": \\"A2\\", \\"order_ts"'),
        (3, ["malformed_record", "bad_encoding"], '"caf\ufffd"'),
        (4, ["malformed_record", "bad_encoding"], '"[1,\\u0000]"'),
    ]
    assert [json.loads(raw) for raw in result.rejected["raw"]] == texts[1:4]
    assert result.rejected.schema == pl.Schema(REJECTED_SCHEMA)


def test_malformed_record_follows_ragged_row_in_contract_order() -> None:
    assert CONTRACT_ORDER.index("malformed_record") == CONTRACT_ORDER.index("ragged_row") + 1
    assert CONTRACT_ORDER.index("malformed_record") < CONTRACT_ORDER.index("bad_encoding")


def test_record_text_of_good_lines_only_changes_nothing() -> None:
    records = [record(1), record(2, quantity="0"), record(1)]
    plain = validate_batch(raw_batch(records), IDENTITY, BATCH)

    texted = validate_batch(
        with_record_text(raw_batch(records), [None, None, None]), IDENTITY, BATCH
    )

    assert_frame_equal(texted.valid, plain.valid)
    assert_frame_equal(texted.rejected, plain.rejected)
    assert reasons_by_row(texted.rejected) == {2: ["zero_quantity"], 3: ["duplicate"]}


def test_batch_without_field_counts_is_never_ragged() -> None:
    result = validate_batch(raw_batch([record(1), record(2)]), IDENTITY, BATCH)

    assert result.rejected.height == 0


# --- encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({"product": "Cami\ufffdn"}, ["bad_encoding"]),
        ({"region": "Nor\ufffdte"}, ["bad_encoding"]),
        ({"customer_id": "\ufffd"}, ["bad_encoding"]),
        ({"product": "Pen\x00"}, ["bad_encoding"]),
        ({"category": "\x00"}, ["bad_encoding"]),
        ({"quantity": "2\x00"}, ["bad_encoding", "bad_type:quantity"]),
        ({"unit_price": "1\ufffd5"}, ["bad_encoding", "bad_type:unit_price"]),
    ],
)
def test_replacement_character_or_nul_is_bad_encoding(
    changes: dict[str, str], reasons: list[str]
) -> None:
    valid, got = validate_one(**changes)

    assert valid.height == 0
    assert got == reasons


def test_bad_encoding_in_a_column_outside_the_contract_still_rejects_the_record() -> None:
    result = validate_batch(raw_batch([record(1) | {"notes": "caf\ufffd"}]), IDENTITY, BATCH)

    assert reasons_by_row(result.rejected) == {1: ["bad_encoding"]}


@pytest.mark.parametrize("text", ["Cami\u00f3n", "東京", "Ünïcödé ✓", "Zoë's 5\" TV"])
def test_well_formed_non_ascii_text_is_valid(text: str) -> None:
    valid, reasons = validate_one(product=text, category=text)

    assert reasons is None
    assert valid["product"].to_list() == [text]


# --- field length ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({"product": "x" * 1000}, None),
        ({"product": "\u00e9" * 1000}, None),  # 2000 bytes, 1000 characters
        ({"product": "x" * 1001}, ["field_too_long"]),
        ({"customer_id": "c" * 5000}, ["field_too_long"]),
        ({"region": "N" * 1001}, ["field_too_long"]),
        ({"sku": "s" * 1001, "quantity": "0"}, ["field_too_long", "zero_quantity"]),
    ],
)
def test_field_longer_than_the_default_maximum_is_rejected(
    changes: dict[str, str], reasons: list[str] | None
) -> None:
    _, got = validate_one(**changes)

    assert got == reasons


def test_field_length_limit_is_configurable_and_covers_columns_outside_the_contract() -> None:
    rules = ValidationRules(max_field_length=19)  # the length of "2024-01-05T10:30:00"
    records = [
        record(1) | {"notes": "n" * 19},
        record(2) | {"notes": "n" * 20},
        record(3, region="R" * 19) | {"notes": None},
        record(4, sku="S" * 20) | {"notes": None},
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)

    assert result.valid["source_row"].to_list() == [1, 3]
    assert reasons_by_row(result.rejected) == {2: ["field_too_long"], 4: ["field_too_long"]}


# --- order date bounds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("2000-01-01", None),
        ("2000-01-01T00:00:00", None),
        ("1999-12-31", ["before_min_date"]),
        ("1999-12-31T23:59:59.999999", ["before_min_date"]),
        ("1970-01-01T00:00:00Z", ["before_min_date"]),
        ("0001-01-01", ["before_min_date"]),
        ("1999-12-31T23:30:00-01:00", None),  # 2000-01-01 00:30 UTC
        ("2000-01-01T00:30:00+01:00", ["before_min_date"]),  # 1999-12-31 23:30 UTC
    ],
)
def test_order_before_the_minimum_date_is_rejected(text: str, reasons: list[str] | None) -> None:
    _, got = validate_one(order_ts=text)

    assert got == reasons


def test_minimum_date_is_configurable_and_inclusive() -> None:
    rules = ValidationRules(min_order_date=dt.date(2024, 1, 1))
    records = [
        record(1, order_ts="2024-01-01"),
        record(2, order_ts="2023-12-31T23:59:59"),
        record(3, order_ts="2024-01-01T08:00:00"),
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)

    assert result.valid["source_row"].to_list() == [1, 3]
    assert reasons_by_row(result.rejected) == {2: ["before_min_date"]}


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("2024-06-02T12:00:00", None),  # exactly not_after: still accepted
        ("2024-06-02", None),
        ("2024-06-01T18:00:00Z", None),
        ("2024-06-02T13:30:00+02:00", None),  # 11:30 UTC
        ("2024-06-02T12:00:00.000001", ["future_date"]),
        ("2024-06-02T12:30:00-01:00", ["future_date"]),  # 13:30 UTC
        ("2024-06-03", ["future_date"]),
        ("2099-01-01", ["future_date"]),
        ("9999-12-31T23:59:59Z", ["future_date"]),
    ],
)
def test_order_later_than_not_after_is_a_future_date(text: str, reasons: list[str] | None) -> None:
    rules = ValidationRules(not_after=dt.datetime(2024, 6, 2, 12, 0))

    _, got = validate_one(rules, order_ts=text)

    assert got == reasons


def test_future_dates_are_accepted_when_not_after_is_unset() -> None:
    _, reasons = validate_one(ValidationRules(not_after=None), order_ts="9999-12-31")

    assert reasons is None


def test_future_date_is_judged_in_the_shop_time_zone() -> None:
    rules = ValidationRules.from_settings(
        Settings(timezone="Europe/Madrid", future_tolerance_hours=24), now=NOW
    )  # now = 14:00 in Madrid, so not_after = 2024-06-02 14:00 Madrid time
    records = [
        record(1, order_ts="2024-06-02T13:59:00"),  # naive: Madrid time
        record(2, order_ts="2024-06-02T14:00:01"),
        record(3, order_ts="2024-06-02T11:59:00Z"),  # 13:59 in Madrid
        record(4, order_ts="2024-06-02T12:30:00Z"),  # 14:30 in Madrid
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)

    assert result.valid["source_row"].to_list() == [1, 3]
    assert reasons_by_row(result.rejected) == {2: ["future_date"], 4: ["future_date"]}


# --- regions ---------------------------------------------------------------------------------


def test_region_outside_the_configured_set_is_unknown() -> None:
    rules = ValidationRules(regions=frozenset({"North", "South"}))
    records = [
        record(1, region="North"),
        record(2, region=" South\t"),
        record(3, region="Atlantis"),
        record(4, region=""),
        record(5, region="North South"),
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)

    assert result.valid["source_row"].to_list() == [1, 2]
    assert result.valid["region"].to_list() == ["North", "South"]
    assert reasons_by_row(result.rejected) == {
        3: ["unknown_region"],
        4: ["missing_region"],  # a missing region is not also unknown
        5: ["unknown_region"],
    }


def test_any_region_is_accepted_when_no_set_is_configured() -> None:
    _, reasons = validate_one(ValidationRules(regions=None), region="Atlantis")

    assert reasons is None


# --- timestamp format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("05/01/2024 10:30", dt.datetime(2024, 1, 5, 10, 30)),
        ("2024-01-05T10:30:00", dt.datetime(2024, 1, 5, 10, 30)),  # ISO 8601 still accepted
        ("2024-01-05", dt.datetime(2024, 1, 5)),
        (" 05/01/2024 10:30 ", dt.datetime(2024, 1, 5, 10, 30)),
    ],
)
def test_configured_timestamp_format_is_accepted_besides_iso(
    text: str, expected: dt.datetime
) -> None:
    rules = ValidationRules(timestamp_format="%d/%m/%Y %H:%M")

    valid, reasons = validate_one(rules, order_ts=text)

    assert reasons is None
    assert valid["order_ts"].to_list() == [expected]


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("05/01/2024", ["bad_type:order_ts"]),  # the whole format must match
        ("31/02/2024 10:00", ["bad_type:order_ts"]),
        ("01/05/2024 10:30 pm", ["bad_type:order_ts"]),
        ("2024/01/05 10:30", ["bad_type:order_ts"]),
        ("31/12/1999 23:00", ["before_min_date"]),
    ],
)
def test_text_matching_neither_iso_nor_the_configured_format_is_bad_type(
    text: str, reasons: list[str]
) -> None:
    rules = ValidationRules(timestamp_format="%d/%m/%Y %H:%M")

    _, got = validate_one(rules, order_ts=text)

    assert got == reasons


def test_configured_format_is_not_used_unless_configured() -> None:
    _, reasons = validate_one(order_ts="05/01/2024 10:30")

    assert reasons == ["bad_type:order_ts"]


def test_naive_timestamp_in_the_configured_format_is_already_shop_time() -> None:
    rules = ValidationRules(timezone="Europe/Madrid", timestamp_format="%d.%m.%Y %H:%M")

    valid, reasons = validate_one(rules, order_ts="05.07.2024 10:30")

    assert reasons is None
    assert valid["order_ts"].to_list() == [dt.datetime(2024, 7, 5, 10, 30)]


def test_configured_format_with_an_offset_is_converted_to_the_shop_time_zone() -> None:
    # Like an ISO timestamp with an offset: converted to shop time, then stored naive.
    rules = ValidationRules(timezone="UTC", timestamp_format="%d/%m/%Y %H:%M %z")

    valid, reasons = validate_one(rules, order_ts="05/01/2024 10:30 +0200")

    assert reasons is None
    assert valid["order_ts"].to_list() == [dt.datetime(2024, 1, 5, 8, 30)]


# --- reason codes ----------------------------------------------------------------------------


def test_every_reason_code_is_described() -> None:
    assert set(REASON_DESCRIPTIONS) == set(Reason)
    assert all(REASON_DESCRIPTIONS[reason].strip() for reason in Reason)


def test_row_breaking_the_new_rules_carries_every_reason_in_contract_order() -> None:
    rules = ValidationRules(
        not_after=dt.datetime(2024, 6, 2, 12, 0), regions=frozenset({"North", "South"})
    )
    worst = record(
        1,
        order_ts="1999-12-31",
        product="Cami\ufffdn",
        category="c" * 1001,
        quantity="0",
        unit_price="-1",
        region="Atlantis",
    )
    records = [
        worst,
        dict(worst),  # an exact copy: the same reasons plus duplicate
        record(3, order_ts="2030-01-01", quantity="100001", unit_price="1000001", region=None),
        record(4, order_id=None, sku="\x00", order_ts="2024-02-30", quantity="2.5"),
    ]

    result = validate_batch(raw_batch(records, [8, 8, 9, 9]), IDENTITY, BATCH, rules)

    first = [
        "ragged_row",
        "bad_encoding",
        "field_too_long",
        "zero_quantity",
        "negative_price",
        "before_min_date",
        "unknown_region",
    ]
    assert reasons_by_row(result.rejected) == {
        1: first,
        2: [*first, "duplicate"],
        3: [
            "missing_region",
            "quantity_out_of_range",
            "price_out_of_range",
            "future_date",
        ],
        4: ["bad_encoding", "missing_order_id", "bad_type:order_ts", "bad_type:quantity"],
    }
    assert result.valid.height == 0
    assert result.reason_counts()["bad_encoding"] == 3


def test_validation_never_emits_duplicate_in_warehouse() -> None:
    # That reason needs the warehouse: it is applied at load, not by validate_batch.
    records = [record(1), record(1), record(2, quantity="0")]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    codes = {code for reasons in result.rejected["reasons"].to_list() for code in reasons}
    assert codes == {"duplicate", "zero_quantity"}
    assert str(Reason.DUPLICATE_IN_WAREHOUSE) not in result.reason_counts()


# --- several reasons -------------------------------------------------------------------------


def test_rejected_row_carries_every_applicable_reason_in_contract_order() -> None:
    records = [
        record(1, order_id=" ", sku=None, region="\t", order_ts="x", quantity="0", unit_price="-5"),
        record(2, order_ts="", quantity="2.5", unit_price="12,5"),
        record(3, quantity="200000", unit_price="2000000"),
        record(4, quantity="-200000", unit_price="-1"),
        record(5, order_id=None, sku="", order_ts=None, quantity="", unit_price=" ", region=""),
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    got = reasons_by_row(result.rejected)
    assert got == {
        1: [
            "missing_order_id",
            "missing_sku",
            "missing_region",
            "bad_type:order_ts",
            "zero_quantity",
            "negative_price",
        ],
        2: ["missing_order_ts", "bad_type:quantity", "bad_type:unit_price"],
        3: ["quantity_out_of_range", "price_out_of_range"],
        4: ["negative_price", "quantity_out_of_range"],
        5: [f"missing_{column}" for column in REQUIRED_VALUES],
    }
    for reasons in got.values():
        assert reasons == sorted(reasons, key=CONTRACT_ORDER.index)
    assert result.valid.height == 0


def test_reason_counts_count_each_code_once_per_row() -> None:
    records = [
        record(1, region="", quantity="0"),
        record(2, region=" "),
        record(3),
        record(4, unit_price="12,50"),
    ]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.reason_counts() == {
        "missing_region": 2,
        "zero_quantity": 1,
        "bad_type:unit_price": 1,
    }
    assert count_reasons(result.rejected) == result.reason_counts()


# --- duplicates ------------------------------------------------------------------------------


def test_exact_copy_is_rejected_as_duplicate_and_the_first_is_kept() -> None:
    records = [record(1), record(2), record(1), record(1)]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1, 2]
    assert reasons_by_row(result.rejected) == {3: ["duplicate"], 4: ["duplicate"]}


def test_copy_differing_only_in_surrounding_whitespace_is_a_duplicate() -> None:
    records = [record(1), record(1, region="  North ", order_id=" A1", quantity="2 ")]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1]
    assert reasons_by_row(result.rejected) == {2: ["duplicate"]}


def test_copy_with_whitespace_only_instead_of_empty_value_is_a_duplicate() -> None:
    # A CSV reader gives null for `,,` and "  " for `,  ,`: after trimming both are empty.
    records = [record(1, customer_id=None), record(1, customer_id="  ")]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1]
    assert reasons_by_row(result.rejected) == {2: ["duplicate"]}


def test_rows_differing_in_any_value_are_not_duplicates() -> None:
    records = [record(1), record(1, quantity="3"), record(1, customer_id=None)]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.valid["source_row"].to_list() == [1, 2, 3]
    assert result.rejected.height == 0


def test_copy_of_an_invalid_row_keeps_its_own_reasons_plus_duplicate() -> None:
    records = [record(1, order_ts="bad"), record(1, order_ts=" bad ")]

    result = validate_batch(raw_batch(records), IDENTITY, BATCH)

    assert result.valid.height == 0
    assert reasons_by_row(result.rejected) == {
        1: ["bad_type:order_ts"],
        2: ["bad_type:order_ts", "duplicate"],
    }


# --- the record as read ----------------------------------------------------------------------


def test_rejected_raw_is_the_record_as_read_with_original_headers_and_untrimmed_values() -> None:
    as_read = {
        "Fecha": " 05/01/2024",
        "Producto ": "Laptop  ",
        "CANTIDAD": "2",
        "precio": None,
        "zona": "\tNorte",
    }
    raw = raw_batch([as_read])
    column_map = map_columns("course.csv", list(as_read))

    result = validate_batch(raw, column_map, BATCH)

    assert reasons_by_row(result.rejected) == {
        1: ["missing_unit_price", "bad_type:order_ts"],
    }
    assert json.loads(result.rejected["raw"].item()) == as_read


# --- the course CSV --------------------------------------------------------------------------


def test_course_csv_rows_get_sku_from_product_and_a_derived_order_id() -> None:
    raw = raw_batch(
        [
            dict(zip(COURSE_HEADER, ["2024-01-05", "Laptop", "2", "999.99", "Norte"], strict=True)),
            dict(zip(COURSE_HEADER, ["2024-01-06", " Mouse ", "-1", "19.99", "Sur"], strict=True)),
        ]
    )
    column_map = map_columns("ventas.csv", COURSE_HEADER)

    result = validate_batch(raw, column_map, "ventas.csv")

    expected = pl.DataFrame(
        {
            "order_id": ["ventas.csv#1", "ventas.csv#2"],
            "order_ts": [dt.datetime(2024, 1, 5), dt.datetime(2024, 1, 6)],
            "customer_id": [None, None],
            "sku": ["Laptop", "Mouse"],
            "product": ["Laptop", "Mouse"],
            "category": [None, None],
            "quantity": [2, -1],
            "unit_price": [Decimal("999.99"), Decimal("19.99")],
            "region": ["Norte", "Sur"],
            "source_row": [1, 2],
        },
        schema=VALID_SCHEMA,
    )
    assert_frame_equal(result.valid, expected)
    assert result.rejected.height == 0


def test_derived_order_id_is_deterministic() -> None:
    raw = raw_batch(
        [dict(zip(COURSE_HEADER, ["2024-01-05", "Laptop", "2", "1", "N"], strict=True))]
    )
    column_map = map_columns("ventas.csv", COURSE_HEADER)

    first = validate_batch(raw, column_map, "b-7")
    second = validate_batch(raw, column_map, "b-7")

    assert first.valid["order_id"].to_list() == ["b-7#1"]
    assert_frame_equal(first.valid, second.valid)


def test_course_csv_exact_copy_is_a_duplicate_despite_distinct_derived_order_ids() -> None:
    row = dict(zip(COURSE_HEADER, ["2024-01-05", "Laptop", "2", "999.99", "Norte"], strict=True))
    raw = raw_batch([row, row])

    result = validate_batch(raw, map_columns("ventas.csv", COURSE_HEADER), "ventas.csv")

    assert result.valid["order_id"].to_list() == ["ventas.csv#1"]
    assert reasons_by_row(result.rejected) == {2: ["duplicate"]}


def test_course_csv_row_without_product_is_missing_sku() -> None:
    row = dict(zip(COURSE_HEADER, ["2024-01-05", " ", "2", "999.99", "Norte"], strict=True))

    result = validate_batch(raw_batch([row]), map_columns("v.csv", COURSE_HEADER), "v.csv")

    assert reasons_by_row(result.rejected) == {1: ["missing_sku"]}


# --- conservation ----------------------------------------------------------------------------

TEXT_VALUES = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "0", "1", "-1", "2.5", "12,50", "1e3", "1.23456", "2024-01-05", "2024-02-30"]
    ),
    st.text(max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(*[TEXT_VALUES] * len(CANONICAL_COLUMNS)), max_size=8))
def test_every_row_ends_in_exactly_one_output(rows: list[tuple[str | None, ...]]) -> None:
    raw = pl.DataFrame(rows, schema=dict.fromkeys(CANONICAL_COLUMNS, pl.String), orient="row")
    raw = raw.with_row_index(SOURCE_ROW, offset=1).with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))

    result = validate_batch(raw, IDENTITY, BATCH)

    assert result.valid.height + result.rejected.height == raw.height
    rows_out = result.valid["source_row"].to_list() + result.rejected["source_row"].to_list()
    assert sorted(rows_out) == list(range(1, raw.height + 1))
    for reasons in result.rejected["reasons"].to_list():
        assert reasons
        assert reasons == sorted(set(reasons), key=CONTRACT_ORDER.index)
        assert str(Reason.DUPLICATE_IN_WAREHOUSE) not in reasons


TIMESTAMP_TEXTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2024-01-05T10:20:30",
            "2024-01-05T10:20:30.5",
            "2024-01-05 10:20:30",
            "2024-01-05T10:20",
            "2024-01-05",
            "2024-01-05T10:20:30Z",
            "2024-01-05T10:20:30+02:00",
            "2024-01-05 10:20-0530",
            "2024-02-30T00:00:00",
            "2024-01-05T25:00:00",
            "05/01/2024",
            "",
        ]
    ),
    st.text(alphabet="0123456789-T:. Z+", max_size=22),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(TIMESTAMP_TEXTS, min_size=1, max_size=12), st.sampled_from(["UTC", "Europe/Madrid"])
)
def test_sql_timestamps_are_what_parse_timestamp_gives_every_row(
    texts: list[str | None], timezone: str
) -> None:
    """The common shape is cast by DuckDB, the rest parsed by chrono: together, every value is
    the one `parse_timestamp` gives the trimmed text, and only unreadable text is a bad type."""
    rules = ValidationRules(timezone=timezone, min_order_date=dt.date(1, 1, 1))
    records = [record(n, order_ts=text) for n, text in enumerate(texts, start=1)]
    result = validate_batch(raw_batch(records), IDENTITY, BATCH, rules)
    trimmed = pl.Series("order_ts", texts, dtype=pl.String).str.strip_chars()
    trimmed = pl.when(trimmed != "").then(trimmed).otherwise(None)
    reference = pl.select(parse_timestamp(trimmed, timezone)).to_series().to_list()
    loaded = dict(zip(result.valid["source_row"], result.valid["order_ts"], strict=True))
    reasons = dict(zip(result.rejected["source_row"], result.rejected["reasons"], strict=True))
    for row, (text, expected) in enumerate(zip(texts, reference, strict=True), start=1):
        if expected is not None:
            assert loaded.get(row) == expected, (text, reasons.get(row))
        elif text is not None and text.strip():
            assert str(Reason.BAD_TYPE_ORDER_TS) in reasons[row], text


def test_headers_named_like_the_outputs_are_kept_in_raw_as_written() -> None:
    raw = pl.DataFrame(
        {
            SOURCE_ROW: [1, 2],
            **{column: ["x", "x"] for column in CANONICAL_COLUMNS},
            "source_row": ["7", "8"],
            "reasons": ["none", "none"],
        }
    ).with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))

    result = validate_batch(raw, IDENTITY, BATCH)

    assert result.rejected["source_row"].to_list() == [1, 2]
    first = json.loads(result.rejected["raw"][0])
    assert (first["source_row"], first["reasons"]) == ("7", "none")


# --- batches side by side ----------------------------------------------------------------------


def test_batches_validated_side_by_side_keep_their_own_rules_and_rows() -> None:
    """Batches share one in-memory DuckDB database (a cursor each): validated at once from
    many threads, each keeps its own rows, temp tables and timestamp rules."""
    day_first = ValidationRules(timestamp_format="%d/%m/%Y %H:%M")
    batches = [
        (raw_batch([record(n, order_ts="05/01/2024 10:30") for n in range(size)]), rules)
        for size in range(1, 9)
        for rules in (day_first, ValidationRules())
    ]
    one_by_one = [validate_batch(raw, IDENTITY, BATCH, rules) for raw, rules in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        side_by_side = list(
            pool.map(lambda batch: validate_batch(batch[0], IDENTITY, BATCH, batch[1]), batches)
        )
    for alone, together in zip(one_by_one, side_by_side, strict=True):
        assert_frame_equal(alone.sales, together.sales)
        assert_frame_equal(alone.rejected, together.rejected)
    # The day-first rules parse every row; the default ones reject every row's timestamp.
    assert [result.valid.height for result in one_by_one[::2]] == list(range(1, 9))
    assert [result.rejected.height for result in one_by_one[1::2]] == list(range(1, 9))
