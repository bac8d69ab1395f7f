"""Transform: a validated batch becomes rows of the `sales` table.

Pure and vectorised. Money stays exact (DECIMAL(18,4)); the result is checked against the
contract's Pandera model so a transform bug can never reach the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandera.errors
import polars as pl

from salesflow.config import Settings
from salesflow.contract import MONEY, SALES_COLUMNS, SalesRecord


@dataclass(frozen=True)
class TicketBands:
    """Upper bounds (inclusive) of the low, medium and high ticket sizes."""

    low_max: Decimal = Decimal(100)
    medium_max: Decimal = Decimal(500)
    high_max: Decimal = Decimal(2000)

    @classmethod
    def from_settings(cls, settings: Settings) -> TicketBands:
        return cls(settings.ticket_low_max, settings.ticket_medium_max, settings.ticket_high_max)


class ContractViolation(Exception):
    """The transform produced rows that break the contract: a bug, never the user's data."""


def ticket_size(total: pl.Expr, bands: TicketBands) -> pl.Expr:
    """`return` for a negative total, else the first band whose upper bound holds the total."""
    return (
        pl.when(total < 0)
        .then(pl.lit("return"))
        .when(total <= bands.low_max)
        .then(pl.lit("low"))
        .when(total <= bands.medium_max)
        .then(pl.lit("medium"))
        .when(total <= bands.high_max)
        .then(pl.lit("high"))
        .otherwise(pl.lit("very_high"))
    )


def transform_batch(
    valid: pl.DataFrame, batch_id: str, bands: TicketBands | None = None
) -> pl.DataFrame:
    """Enrich validated rows with total, ticket size and calendar columns, in `sales` order."""
    bands = bands or TicketBands()
    total = (pl.col("quantity") * pl.col("unit_price")).cast(MONEY)
    sales = (
        valid.with_columns(total.alias("total"))
        .with_columns(
            ticket_size(pl.col("total"), bands).alias("ticket_size"),
            pl.col("order_ts").dt.date().alias("order_date"),
            pl.col("order_ts").dt.strftime("%Y-%m").alias("month"),
            pl.col("order_ts").dt.strftime("%A").alias("weekday"),
            pl.lit(batch_id).alias("batch_id"),
        )
        .select(SALES_COLUMNS)
    )
    return check_contract(sales)


def check_contract(sales: pl.DataFrame) -> pl.DataFrame:
    """Raise ContractViolation with the failing checks if any row breaks the contract."""
    try:
        SalesRecord.validate(sales, lazy=True)
    except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as error:
        raise ContractViolation(f"transformed batch breaks the contract: {error}") from error
    return sales
