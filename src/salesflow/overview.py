"""What a warehouse holds at a glance: revenue by region, rejections by reason, row counts.

The demo prints this after loading; it is data here, so the CLI only formats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from salesflow.warehouse.base import Warehouse


@dataclass(frozen=True)
class RegionRevenue:
    """One region's orders, units, net revenue and returns (as a positive amount)."""

    region: str
    orders: int
    units: int
    net_revenue: Decimal
    returns: Decimal


@dataclass(frozen=True)
class WarehouseOverview:
    """The overview of one warehouse, largest region first."""

    location: str
    regions: list[RegionRevenue]
    rejected_by_reason: list[tuple[str, int]]
    sales_rows: int
    rejected_rows: int


def warehouse_overview(warehouse: Warehouse) -> WarehouseOverview:
    """Read the overview from `warehouse` (read only)."""
    by_region = warehouse.fetch(
        "SELECT region, count(DISTINCT order_id), sum(quantity), sum(total), "
        "coalesce(sum(-total) FILTER (WHERE quantity < 0), 0) "
        "FROM sales GROUP BY region ORDER BY sum(total) DESC"
    )
    reasons = warehouse.fetch(
        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM sales_rejected) "
        "GROUP BY reason ORDER BY count(*) DESC, reason"
    )
    (sales,) = warehouse.fetch("SELECT count(*) FROM sales")[0]
    (quarantined,) = warehouse.fetch("SELECT count(*) FROM sales_rejected")[0]
    return WarehouseOverview(
        location=warehouse.location,
        regions=[
            RegionRevenue(region, orders, units, Decimal(revenue), Decimal(returns))
            for region, orders, units, revenue, returns in by_region
        ],
        rejected_by_reason=[(reason, count) for reason, count in reasons],
        sales_rows=sales,
        rejected_rows=quarantined,
    )
