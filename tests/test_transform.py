"""Tests of the transform: exact totals, ticket sizes, calendar columns and the contract check.

The transform runs in validation's SQL pass; `transform_batch` here feeds it rows that are valid,
written out as the text a landing file would hold, and takes the `sales` rows it makes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from salesflow.config import Settings
from salesflow.contract import CANONICAL_COLUMNS, MONEY, SALES_COLUMNS, SOURCE_ROW
from salesflow.transform import ContractViolation, TicketBands, check_contract
from salesflow.validate import VALID_COLUMNS, validate_batch

BATCH = "sales_2024-01-05.csv"
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
SALES_SCHEMA = {
    "order_id": pl.String,
    "order_ts": pl.Datetime("us"),
    "order_date": pl.Date,
    "customer_id": pl.String,
    "sku": pl.String,
    "product": pl.String,
    "category": pl.String,
    "quantity": pl.Int64,
    "unit_price": MONEY,
    "total": MONEY,
    "ticket_size": pl.String,
    "month": pl.String,
    "weekday": pl.String,
    "region": pl.String,
    "batch_id": pl.String,
    "source_row": pl.Int64,
}


def valid_frame(*rows: tuple[int, str] | tuple[int, str, dt.datetime]) -> pl.DataFrame:
    """Validated rows from (quantity, unit_price[, order_ts]); everything else fixed."""
    records = []
    for n, row in enumerate(rows, start=1):
        quantity, price = row[0], row[1]
        when = row[2] if len(row) == 3 else dt.datetime(2024, 1, 5, 10, 30)
        records.append(
            {
                "order_id": f"A{n}",
                "order_ts": when,
                "customer_id": None if n % 2 else f"C{n}",
                "sku": "SKU-1",
                "product": "Laptop",
                "category": None,
                "quantity": quantity,
                "unit_price": Decimal(price),
                "region": "North",
                "source_row": n,
            }
        )
    return pl.DataFrame(records, schema=VALID_SCHEMA)


def transform_batch(
    valid: pl.DataFrame, batch_id: str, bands: TicketBands | None = None
) -> pl.DataFrame:
    """The `sales` rows validation makes of `valid` rows, each written as text."""
    raw = valid.select(
        pl.col("source_row").alias(SOURCE_ROW),
        *(pl.col(column).cast(pl.String) for column in CANONICAL_COLUMNS),
    ).with_columns(pl.col("order_ts").str.replace(" ", "T"))
    result = validate_batch(raw, {c: c for c in CANONICAL_COLUMNS}, batch_id, bands=bands)
    assert result.rejected.height == 0, result.rejected["reasons"].to_list()
    return check_contract(result.sales)


def test_sales_rows_have_the_contract_columns_in_order_and_exact_values() -> None:
    valid = valid_frame((3, "19.99"), (-1, "5", dt.datetime(2024, 2, 29, 23, 59, 59, 999_999)))

    sales = transform_batch(valid, BATCH)

    expected = pl.DataFrame(
        {
            "order_id": ["A1", "A2"],
            "order_ts": [
                dt.datetime(2024, 1, 5, 10, 30),
                dt.datetime(2024, 2, 29, 23, 59, 59, 999_999),
            ],
            "order_date": [dt.date(2024, 1, 5), dt.date(2024, 2, 29)],
            "customer_id": [None, "C2"],
            "sku": ["SKU-1", "SKU-1"],
            "product": ["Laptop", "Laptop"],
            "category": [None, None],
            "quantity": [3, -1],
            "unit_price": [Decimal("19.99"), Decimal("5")],
            "total": [Decimal("59.97"), Decimal("-5")],
            "ticket_size": ["low", "return"],
            "month": ["2024-01", "2024-02"],
            "weekday": ["Friday", "Thursday"],
            "region": ["North", "North"],
            "batch_id": [BATCH, BATCH],
            "source_row": [1, 2],
        },
        schema=SALES_SCHEMA,
    )
    assert tuple(sales.columns) == SALES_COLUMNS
    assert_frame_equal(sales, expected)


def test_valid_columns_feed_the_transform() -> None:
    assert tuple(valid_frame((1, "1")).columns) == VALID_COLUMNS


def test_empty_batch_transforms_to_an_empty_sales_frame() -> None:
    sales = transform_batch(valid_frame((1, "1")).clear(), BATCH)

    assert sales.height == 0
    assert sales.schema == pl.Schema(SALES_SCHEMA)


@pytest.mark.parametrize(
    ("quantity", "price", "total"),
    [
        (3, "19.99", "59.97"),
        (3, "0.3333", "0.9999"),
        (7, "0.0001", "0.0007"),
        (10, "0.1", "1"),
        (-2, "12.5", "-25"),
        (5, "0", "0"),
        (100_000, "1000000", "100000000000"),
        (99_999, "9999.9999", "999989990.0001"),
    ],
)
def test_total_is_the_exact_decimal_product(quantity: int, price: str, total: str) -> None:
    sales = transform_batch(valid_frame((quantity, price)), BATCH)

    assert sales.schema["total"] == MONEY
    assert sales["total"].to_list() == [Decimal(total)]


@pytest.mark.parametrize(
    ("quantity", "price", "size"),
    [
        (-1, "0.0001", "return"),
        (-3, "1000", "return"),
        (1, "0", "low"),
        (-1, "0", "low"),  # a zero total is not negative
        (1, "100", "low"),
        (1, "100.0001", "medium"),
        (2, "250", "medium"),
        (2, "250.0001", "high"),
        (1, "2000", "high"),
        (1, "2000.0001", "very_high"),
        (1000, "1000", "very_high"),
    ],
)
def test_ticket_size_follows_the_default_inclusive_bands(
    quantity: int, price: str, size: str
) -> None:
    sales = transform_batch(valid_frame((quantity, price)), BATCH)

    assert sales["ticket_size"].to_list() == [size]


def test_ticket_bands_are_configurable() -> None:
    bands = TicketBands(low_max=Decimal(10), medium_max=Decimal(20), high_max=Decimal(30))
    valid = valid_frame((1, "10"), (1, "10.5"), (1, "20"), (1, "30"), (1, "30.0001"), (-1, "1"))

    sales = transform_batch(valid, BATCH, bands)

    assert sales["ticket_size"].to_list() == [
        "low",
        "medium",
        "medium",
        "high",
        "very_high",
        "return",
    ]


def test_ticket_bands_come_from_settings() -> None:
    configured = Settings(ticket_low_max=1, ticket_medium_max=2, ticket_high_max=3)

    assert TicketBands.from_settings(configured) == TicketBands(Decimal(1), Decimal(2), Decimal(3))


@pytest.mark.parametrize(
    ("when", "date", "month", "weekday"),
    [
        (dt.datetime(2024, 1, 1), dt.date(2024, 1, 1), "2024-01", "Monday"),
        (dt.datetime(2024, 1, 2, 12), dt.date(2024, 1, 2), "2024-01", "Tuesday"),
        (dt.datetime(2024, 1, 3, 8), dt.date(2024, 1, 3), "2024-01", "Wednesday"),
        (dt.datetime(2024, 2, 29, 23, 59, 59), dt.date(2024, 2, 29), "2024-02", "Thursday"),
        (dt.datetime(2024, 11, 1, 0, 0, 1), dt.date(2024, 11, 1), "2024-11", "Friday"),
        (dt.datetime(2023, 12, 30, 18), dt.date(2023, 12, 30), "2023-12", "Saturday"),
        (dt.datetime(2023, 12, 31, 23, 59), dt.date(2023, 12, 31), "2023-12", "Sunday"),
    ],
)
def test_calendar_columns_come_from_the_order_timestamp(
    when: dt.datetime, date: dt.date, month: str, weekday: str
) -> None:
    sales = transform_batch(valid_frame((1, "1", when)), BATCH)

    assert sales.select("order_date", "month", "weekday").row(0) == (date, month, weekday)


def test_batch_id_and_source_row_are_carried_into_every_row() -> None:
    sales = transform_batch(valid_frame((1, "1"), (2, "2"), (3, "3")), "b-42")

    assert sales["batch_id"].to_list() == ["b-42"] * 3
    assert sales["source_row"].to_list() == [1, 2, 3]


# --- the contract check ----------------------------------------------------------------------


def good_sales() -> pl.DataFrame:
    return transform_batch(valid_frame((3, "19.99"), (-1, "5")), BATCH)


def test_check_contract_returns_a_good_batch_unchanged() -> None:
    sales = good_sales()

    assert_frame_equal(check_contract(sales), sales)


@pytest.mark.parametrize(
    ("breakage", "change"),
    [
        ("columns out of order", lambda f: f.select(reversed(f.columns))),
        ("column missing", lambda f: f.drop("weekday")),
        ("extra column", lambda f: f.with_columns(extra=pl.lit(1))),
        ("zero quantity", lambda f: f.with_columns(quantity=pl.lit(0, pl.Int64))),
        ("negative price", lambda f: f.with_columns(unit_price=pl.lit(-1).cast(MONEY))),
        ("float total", lambda f: f.with_columns(total=pl.col("total").cast(pl.Float64))),
        ("null order_id", lambda f: f.with_columns(order_id=pl.lit(None, pl.String))),
        ("empty sku", lambda f: f.with_columns(sku=pl.lit(""))),
        ("empty region", lambda f: f.with_columns(region=pl.lit(""))),
        ("unknown ticket size", lambda f: f.with_columns(ticket_size=pl.lit("huge"))),
        ("month not YYYY-MM", lambda f: f.with_columns(month=pl.lit("2024/01"))),
        ("weekday not English", lambda f: f.with_columns(weekday=pl.lit("lunes"))),
        ("source_row below 1", lambda f: f.with_columns(source_row=pl.lit(0, pl.Int64))),
        ("null order_ts", lambda f: f.with_columns(order_ts=pl.lit(None, pl.Datetime("us")))),
    ],
)
def test_check_contract_raises_contract_violation_on_a_broken_batch(breakage, change) -> None:
    with pytest.raises(ContractViolation, match="breaks the contract"):
        check_contract(change(good_sales()))


def test_rows_validation_rejects_never_become_sales_rows() -> None:
    raw = valid_frame((0, "10"), (1, "10")).select(
        pl.col("source_row").alias(SOURCE_ROW),
        *(pl.col(column).cast(pl.String) for column in CANONICAL_COLUMNS),
    )
    result = validate_batch(raw, {c: c for c in CANONICAL_COLUMNS}, BATCH)
    assert result.sales["source_row"].to_list() == [2]
    assert result.rejected["reasons"].to_list() == [["zero_quantity"]]
