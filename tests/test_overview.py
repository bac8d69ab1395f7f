"""The warehouse overview the demo prints, read from a real DuckDB warehouse."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from salesflow import stages
from salesflow.overview import RegionRevenue, warehouse_overview
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv


def test_overview_sums_revenue_by_region_largest_first_and_counts_rejections(
    tmp_path: Path,
) -> None:
    source = write_csv(
        tmp_path / "a.csv",
        CANONICAL_HEADER,
        "o1,2024-01-01T10:00:00,c1,s1,Widget,tools,2,10.00,north",
        "o2,2024-01-01T11:00:00,c2,s1,Widget,tools,5,10.00,south",
        "o3,2024-01-01T12:00:00,c2,s1,Widget,tools,-1,10.00,south",
        "o4,2024-01-01T13:00:00,c3,s1,Widget,tools,0,10.00,south",
    )
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    warehouse.ensure_schema()
    manifest = stages.extract(source, tmp_path / "staging", None, force=True)
    manifest = stages.validate(manifest, ValidationRules(), TicketBands())
    warehouse.load_batch(manifest, "test-run")

    overview = warehouse_overview(warehouse)

    assert overview.location == warehouse.location
    assert overview.regions == [
        RegionRevenue("south", 2, 4, Decimal("40.00"), Decimal("10.00")),
        RegionRevenue("north", 1, 2, Decimal("20.00"), Decimal("0")),
    ]
    assert overview.rejected_by_reason == [("zero_quantity", 1)]
    assert (overview.sales_rows, overview.rejected_rows) == (3, 1)
