"""Warehouses: where validated sales land, behind one small interface (see base.Warehouse)."""

from __future__ import annotations

from salesflow.warehouse.base import Warehouse
from salesflow.warehouse.duckdb import DuckDBWarehouse
from salesflow.warehouse.postgres import PostgresWarehouse, is_postgres_location


def open_warehouse(location: str) -> Warehouse:
    """The warehouse at `location`: a `postgresql://` (or `postgres://`) URL for PostgreSQL,
    anything else a DuckDB file path (the embedded default)."""
    if is_postgres_location(location):
        return PostgresWarehouse(location)
    return DuckDBWarehouse(location)


__all__ = ["DuckDBWarehouse", "PostgresWarehouse", "Warehouse", "open_warehouse"]
