"""What only the DuckDB warehouse has: one file, which another process can hold, which may not
be a DuckDB database at all, and which merely asking about does not create."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from salesflow.errors import UsageError, WarehouseBusyError
from salesflow.warehouse import DuckDBWarehouse


def test_another_process_holding_the_file_is_reported_as_busy(
    duckdb_warehouse: DuckDBWarehouse,
) -> None:
    warehouse = duckdb_warehouse
    warehouse.ensure_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(30)",
            warehouse.location,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseBusyError, match="in use by another process"):
            warehouse.fetch("SELECT 1")
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert warehouse.fetch("SELECT 1") == [(1,)]


def test_a_file_that_is_not_a_duckdb_database_is_a_usage_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.duckdb"
    not_a_db.write_text("just text, not a database\n" * 100)

    with pytest.raises(UsageError, match="cannot open as a DuckDB warehouse"):
        DuckDBWarehouse(not_a_db).ensure_schema()


def test_asking_whether_it_holds_data_does_not_create_the_file(
    duckdb_warehouse: DuckDBWarehouse,
) -> None:
    assert duckdb_warehouse.holds_data() is False
    assert not duckdb_warehouse.path.exists()  # asking does not create the file
