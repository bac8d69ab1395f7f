"""The transform's settings and its safety net: ticket bands, and the contract check.

The transform itself (total, ticket size, calendar columns) is SQL, run in the same DuckDB pass
as validation (`validate_sql.sales_sql`); money stays exact (DECIMAL(18,4)). Every batch's `sales`
rows are checked against the contract's Pandera model, so a transform bug never reaches the
warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandera.errors
import polars as pl

from salesflow.config import Settings
from salesflow.contract import SalesRecord


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


def check_contract(sales: pl.DataFrame) -> pl.DataFrame:
    """Raise ContractViolation with the failing checks if any row breaks the contract."""
    try:
        SalesRecord.validate(sales, lazy=True)
    except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as error:
        raise ContractViolation(f"transformed batch breaks the contract: {error}") from error
    return sales
