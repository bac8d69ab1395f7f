"""Helpers shared by the warehouse tests: a file staged ready to load, the tables' checksums."""

from __future__ import annotations

from pathlib import Path

from salesflow import stages
from salesflow.manifest import BatchManifest
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.warehouse.base import Warehouse

TABLES = ("sales", "sales_rejected", "daily_sales")


def staged(source: Path, staging: Path, warehouse: Warehouse | None = None) -> BatchManifest:
    """Run a file through extract, validate and transform, ready to load."""
    manifest = stages.extract(source, staging, warehouse, force=True)
    return stages.validate(manifest, ValidationRules(), TicketBands())


def checksums(warehouse: Warehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in (*TABLES, "batches")}
