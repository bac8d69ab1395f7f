"""Warehouses: where validated sales land, behind one small interface (see base.Warehouse)."""

from __future__ import annotations

from salesflow.warehouse.base import Warehouse
from salesflow.warehouse.duckdb import DuckDBWarehouse


def open_warehouse(location: str) -> Warehouse:
    """The warehouse at `location`: a DuckDB file path (the embedded default)."""
    return DuckDBWarehouse(location)


__all__ = ["DuckDBWarehouse", "Warehouse", "open_warehouse"]
