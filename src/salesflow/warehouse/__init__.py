"""Warehouses: where validated sales land, behind one small interface (see base.Warehouse)."""

from __future__ import annotations

from duckdb import Error as DuckDBError
from psycopg import Error as PostgresError

from salesflow.warehouse.base import Warehouse
from salesflow.warehouse.duckdb import DuckDBWarehouse
from salesflow.warehouse.postgres import PostgresWarehouse, is_postgres_location

# What a warehouse's `fetch` raises when the database refuses a query (connection trouble is
# already a salesflow error): readers turn it into a one-line UsageError.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DuckDBError, PostgresError)


def open_warehouse(location: str) -> Warehouse:
    """The warehouse at `location`: a `postgresql://` (or `postgres://`) URL for PostgreSQL,
    anything else a DuckDB file path (the embedded default)."""
    if is_postgres_location(location):
        return PostgresWarehouse(location)
    return DuckDBWarehouse(location)


__all__ = ["DATABASE_ERRORS", "DuckDBWarehouse", "PostgresWarehouse", "Warehouse", "open_warehouse"]
