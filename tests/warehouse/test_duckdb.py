"""The DuckDB warehouse: atomic batch replace, reconciliation, the mart, failure records."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from salesflow import stages
from salesflow.contract import CONTRACT_VERSION
from salesflow.errors import ReconciliationError, UsageError, WarehouseBusyError
from salesflow.manifest import BatchManifest, BatchStatus
from salesflow.transform import TicketBands
from salesflow.validate import ValidationRules
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv

TABLES = ("sales", "sales_rejected", "daily_sales")


def staged(source: Path, staging: Path, warehouse: DuckDBWarehouse | None = None) -> BatchManifest:
    """Run a file through extract, validate and transform, ready to load."""
    manifest = stages.extract(source, staging, warehouse, force=True)
    return stages.transform(stages.validate(manifest, ValidationRules()), TicketBands())


def checksums(warehouse: DuckDBWarehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in (*TABLES, "batches")}


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh" / "warehouse.duckdb")


@pytest.fixture
def day_file(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "landing" / "day1.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
        "O1,2024-03-01T10:00:00,C1,S2,Mug,Home,1,3.25,North",
        "O2,2024-03-01T11:00:00,,S1,Kettle,Home,-1,10.50,North",
        "O3,2024-03-02T09:00:00,C2,S3,Lamp,,3,40,South",
        "O4,2024-03-02T09:30:00,C2,S3,Lamp,,0,40,South",
        "O3,2024-03-02T09:00:00,C2,S3,Lamp,,3,40,South",
    )


def test_load_writes_valid_rows_rejects_and_batch_record(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    outcome = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    assert (outcome.status, outcome.rows_in, outcome.rows_loaded, outcome.rows_rejected) == (
        BatchStatus.LOADED,
        6,
        4,
        2,
    )
    assert outcome.amount_loaded == Decimal("133.7500")
    assert warehouse.fetch(
        "SELECT order_id, sku, total, ticket_size FROM sales ORDER BY source_row"
    ) == [
        ("O1", "S1", Decimal("21.0000"), "low"),
        ("O1", "S2", Decimal("3.2500"), "low"),
        ("O2", "S1", Decimal("-10.5000"), "return"),
        ("O3", "S3", Decimal("120.0000"), "medium"),
    ]
    assert warehouse.fetch(
        "SELECT source_row, reasons FROM sales_rejected ORDER BY source_row"
    ) == [
        (5, ["zero_quantity"]),
        (6, ["duplicate"]),
    ]
    assert warehouse.fetch(
        "SELECT batch_id, rows_in, rows_loaded, rows_rejected, amount_loaded, status, error, "
        "contract_version, flow_run_id FROM batches"
    ) == [("day1.csv", 6, 4, 2, Decimal("133.7500"), "loaded", None, CONTRACT_VERSION, "run-1")]


def test_daily_sales_mart_counts_orders_units_revenue_and_returns(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), None)

    assert warehouse.fetch("SELECT * FROM daily_sales ORDER BY order_date") == [
        (
            date(2024, 3, 1),
            "North",
            "Home",
            2,
            2,
            Decimal("13.7500"),
            Decimal("10.5000"),
        ),
        (date(2024, 3, 2), "South", None, 1, 3, Decimal("120.0000"), Decimal("0")),
    ]


def test_reloading_a_batch_leaves_the_warehouse_identical(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)

    warehouse.load_batch(staged(day_file, tmp_path / "second"), "run-1")

    after = checksums(warehouse)
    for table in TABLES:
        assert after[table] == before[table], table
    assert warehouse.fetch("SELECT count(*) FROM batches") == [(1,)]


def test_changed_file_replaces_its_batch_and_clears_mart_dates_it_no_longer_has(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), None)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")

    warehouse.load_batch(staged(day_file, tmp_path / "second"), None)

    assert warehouse.fetch("SELECT order_id FROM sales") == [("O9",)]
    assert warehouse.fetch("SELECT count(*) FROM sales_rejected") == [(0,)]
    assert warehouse.fetch("SELECT order_date, region, net_revenue FROM daily_sales") == [
        (date(2024, 3, 5), "East", Decimal("10.5000"))
    ]


def test_reconciliation_mismatch_fails_the_batch_and_keeps_the_previous_state(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    tampered = staged(day_file, tmp_path / "second").model_copy(update={"amount": Decimal("1")})

    expected = r"amount loaded 133\.7500 != amount transformed 1"
    with pytest.raises(ReconciliationError, match=expected):
        warehouse.load_batch(tampered, "run-2")

    assert checksums(warehouse) == before


def test_crash_in_the_middle_of_a_load_rolls_back_to_the_previous_state(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    broken = staged(day_file, tmp_path / "second")
    broken.rejected_path.unlink()  # sales rows get inserted, then reading rejects fails

    with pytest.raises(Exception, match=r"rejected\.parquet"):
        warehouse.load_batch(broken, "run-2")

    assert checksums(warehouse) == before


def test_a_failed_attempt_keeps_the_loaded_rows_and_is_not_taken_as_loaded(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    manifest = staged(day_file, tmp_path / "stage")
    loaded = warehouse.load_batch(manifest, "run-1")
    assert warehouse.loaded_sha256("day1.csv") == manifest.sha256
    assert warehouse.source_index().sha256_of_batch == {"day1.csv": manifest.sha256}
    sales_before = warehouse.table_checksum("sales")

    failure = stages.failed_outcome(day_file, ValueError("boom"), loaded.started_at, "run-2")
    warehouse.record_outcome(failure)

    assert warehouse.table_checksum("sales") == sales_before
    assert warehouse.fetch("SELECT status, error, rows_loaded, flow_run_id FROM batches") == [
        ("failed", f"{day_file}: unexpected ValueError: boom", 4, "run-2")
    ]
    assert warehouse.loaded_sha256("day1.csv") is None
    assert warehouse.source_index().sha256_of_batch == {}


def test_another_process_holding_the_file_is_reported_as_busy(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
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


def test_checksum_is_refused_for_unknown_tables(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="no checksum defined"):
        warehouse.table_checksum("sales; DROP TABLE sales")


def test_content_another_run_loaded_meanwhile_is_skipped_not_loaded_twice(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    # Two runs both extracted the file before either committed; the second commit is a skip.
    first = staged(day_file, tmp_path / "first").model_copy(update={"force": False})
    second = staged(day_file, tmp_path / "second").model_copy(update={"force": False})
    warehouse.load_batch(first, "run-1")
    before = checksums(warehouse)

    outcome = warehouse.load_batch(second, "run-2")

    assert outcome.status == BatchStatus.SKIPPED
    after = checksums(warehouse)
    assert {t: after[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert warehouse.fetch("SELECT status, rows_loaded, flow_run_id FROM batches") == [
        ("skipped", 4, "run-2")
    ]


def test_a_load_past_its_time_limit_is_interrupted_and_rolled_back(
    warehouse: DuckDBWarehouse, day_file: Path, tmp_path: Path
) -> None:
    from salesflow.errors import LoadTimeoutError
    from salesflow.sources.generator import generate_sales
    from salesflow.warehouse.base import LoadPolicy

    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    (big,) = generate_sales(tmp_path / "big", date(2024, 3, 1), 1, 200_000, seed=3)
    manifest = staged(big, tmp_path / "second")

    with pytest.raises(LoadTimeoutError, match=r"longer than 0\.01 s and was rolled back"):
        warehouse.load_batch(manifest, "run-2", LoadPolicy(timeout_seconds=0.01))

    assert checksums(warehouse) == before
