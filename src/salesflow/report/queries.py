"""What the report reads from the warehouse: every number aggregated in SQL.

Queries go through `Warehouse.fetch` with `?` placeholders, so DuckDB and PostgreSQL answer the
same text; Python only receives a few dozen aggregate rows per chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from salesflow.warehouse import DATABASE_ERRORS
from salesflow.warehouse.base import Warehouse, error_line

ANOMALY_LIMIT = 1000  # rows shown in the anomalies table; more is noise for a reader

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Scope:
    """The order-date range a report covers, as SQL conditions with their `?` parameters."""

    start: date | None
    end: date | None

    def dates(self, column: str = "order_date") -> tuple[str, list[Any]]:
        """A WHERE condition on an order-date column."""
        conditions, params = ["TRUE"], []
        if self.start is not None:
            conditions.append(f"{column} >= ?")
            params.append(self.start)
        if self.end is not None:
            conditions.append(f"{column} <= ?")
            params.append(self.end)
        return " AND ".join(conditions), params

    def batches(self) -> tuple[str, list[Any]]:
        """A WHERE condition on batch_id: rejected rows carry no trustworthy order date, so a
        date range keeps the rejects of the batches that loaded rows in it."""
        if self.start is None and self.end is None:
            return "TRUE", []
        where, params = self.dates()
        return f"batch_id IN (SELECT batch_id FROM sales WHERE {where})", params


@dataclass(frozen=True)
class Totals:
    """The header's numbers."""

    rows_loaded: int
    rows_rejected: int
    orders: int
    net_revenue: Decimal
    returns_value: Decimal
    first_day: date | None
    last_day: date | None


def totals(warehouse: Warehouse, scope: Scope) -> Totals:
    """The header KPIs of the sales in scope and the rejects of their batches."""
    where, params = scope.dates()
    rows, orders, revenue, returns, first, last = warehouse.fetch(
        "SELECT count(*), count(DISTINCT order_id), coalesce(sum(total), 0), "
        "coalesce(sum(-total) FILTER (WHERE quantity < 0), 0), min(order_date), max(order_date) "
        f"FROM sales WHERE {where}",
        params,
    )[0]
    batch_where, batch_params = scope.batches()
    (rejected,) = warehouse.fetch(
        f"SELECT count(*) FROM sales_rejected WHERE {batch_where}", batch_params
    )[0]
    return Totals(
        int(rows), int(rejected), int(orders), Decimal(revenue), Decimal(returns), first, last
    )


def anomalies(warehouse: Warehouse, scope: Scope) -> tuple[Rows, str | None]:
    """The KPI anomalies in range, if the `anomalies` table exists; a table that cannot be read
    (another version's columns) is said in the report, not a failed report."""
    (exists,) = warehouse.fetch(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = current_schema() AND table_name = 'anomalies'"
    )[0]
    if not exists:
        return [], None
    where, params = scope.dates()
    try:
        rows = warehouse.fetch(
            "SELECT order_date, region, kpi, value, median, mad, robust_z, direction, "
            f"window_days, detected_at FROM anomalies WHERE {where} "
            f"ORDER BY order_date, region, kpi LIMIT {ANOMALY_LIMIT + 1}",
            params,
        )
    except DATABASE_ERRORS as error:
        return [], f"The anomalies table could not be read: {error_line(error)}"
    return rows, None


# Each chart's query, with `{where}` for the scope's condition: order dates, except the reject
# reasons, which are scoped by batch (see `Scope.batches`).
_BY_DATE = "dates"
_BY_BATCH = "batches"
CHART_QUERIES: dict[str, tuple[str, str]] = {
    "daily": (
        _BY_DATE,
        "SELECT order_date, sum(net_revenue), sum(returns_value) FROM daily_sales "
        "WHERE {where} GROUP BY order_date ORDER BY order_date",
    ),
    "region": (
        _BY_DATE,
        "SELECT region, sum(net_revenue), sum(returns_value) FROM daily_sales "
        'WHERE {where} GROUP BY region ORDER BY sum(net_revenue) DESC, region COLLATE "C"',
    ),
    "category": (
        _BY_DATE,
        "SELECT category, sum(net_revenue), sum(returns_value) FROM daily_sales "
        'WHERE {where} GROUP BY category ORDER BY sum(net_revenue) DESC, category COLLATE "C"',
    ),
    "ticket_size": (
        _BY_DATE,
        "SELECT ticket_size, count(*), sum(total) FROM sales WHERE {where} GROUP BY ticket_size",
    ),
    "weekday": (
        _BY_DATE,
        "SELECT CAST(extract(isodow FROM order_date) AS INTEGER), count(DISTINCT order_id), "
        "sum(total) FROM sales WHERE {where} GROUP BY 1 ORDER BY 1",
    ),
    "quality": (
        _BY_DATE,
        "SELECT d.first_day, sum(b.rows_loaded), sum(b.rows_rejected) FROM batches AS b "
        "JOIN (SELECT batch_id, min(order_date) AS first_day FROM sales "
        "WHERE {where} GROUP BY batch_id) AS d ON d.batch_id = b.batch_id "
        "WHERE b.rows_in IS NOT NULL GROUP BY d.first_day ORDER BY d.first_day",
    ),
    "reject_reasons": (
        _BY_BATCH,
        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM sales_rejected "
        'WHERE {where}) AS r GROUP BY reason ORDER BY count(*) DESC, reason COLLATE "C"',
    ),
}


def chart_rows(warehouse: Warehouse, scope: Scope, chart: str) -> Rows:
    """The aggregate rows one chart plots (`chart` is a key of `CHART_QUERIES`)."""
    scoped_by, sql = CHART_QUERIES[chart]
    where, params = scope.batches() if scoped_by == _BY_BATCH else scope.dates()
    return warehouse.fetch(sql.format(where=where), params)
