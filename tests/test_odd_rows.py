"""Valid rows that deserve a warning in the logs: free items and returns."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from salesflow.contract import MONEY
from salesflow.validate import count_odd_but_valid


def test_zero_prices_and_returns_are_counted_and_absent_kinds_omitted() -> None:
    valid = pl.DataFrame(
        {
            "quantity": [1, -2, 3, -1],
            "unit_price": [Decimal("0"), Decimal("5"), Decimal("0"), Decimal("2")],
        },
        schema={"quantity": pl.Int64, "unit_price": MONEY},
    )

    assert count_odd_but_valid(valid) == {"zero_price": 2, "returns": 2}
    assert count_odd_but_valid(valid.filter(pl.col("quantity") > 0).head(0)) == {}
