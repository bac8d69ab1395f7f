"""A month of generated sales loaded into a DuckDB warehouse without Prefect, shared by the
report tests (loading takes seconds; the tests only read it)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from salesflow import stages
from salesflow.rules import ValidationRules
from salesflow.sources.generator import generate_sales
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse
from salesflow.warehouse.base import LoadPolicy, Warehouse

FIRST_DAY = date(2024, 1, 1)
DAYS = 35


def load_files(folder: Path, warehouse: Warehouse, staging: Path) -> None:
    """Extract, validate, transform and load every file of `folder`, in name order."""
    for source in sorted(folder.iterdir()):
        manifest = stages.extract(source, staging, None, force=True)
        manifest = stages.validate(manifest, ValidationRules(), TicketBands())
        warehouse.load_batch(manifest, None, LoadPolicy(accept_rejects=True))


@pytest.fixture(scope="session")
def loaded_warehouse(tmp_path_factory: pytest.TempPathFactory) -> DuckDBWarehouse:
    root = tmp_path_factory.mktemp("report-warehouse")
    landing = root / "landing"
    generate_sales(landing, FIRST_DAY, DAYS, 200, seed=7, dirty_ratio=0.02)
    warehouse = DuckDBWarehouse(root / "warehouse.duckdb")
    load_files(landing, warehouse, root / "staging")
    return warehouse
