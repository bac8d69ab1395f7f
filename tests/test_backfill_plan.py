"""Backfill plans come from the landing folder and the warehouse's batches table alone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from salesflow.backfill import Reprocess, days_between, files_by_day, plan_backfill
from salesflow.errors import UsageError
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.warehouse import DuckDBWarehouse


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    for name in (
        "sales_2024-03-01.csv",
        "sales_2024-03-02.csv",
        "returns_2024-03-02.parquet",
        "sales_2024-03-03.csv",
        "sales_2024-03-04.csv",
        "notes_2024-03-01.txt",
        "sales_2024-02-30.csv",
    ):
        (folder / name).write_text("x", encoding="utf-8")
    return folder


def record(warehouse: DuckDBWarehouse, batch_id: str, status: BatchStatus) -> None:
    now = datetime.now(UTC)
    warehouse.record_outcome(
        BatchOutcome(
            batch_id=batch_id,
            source=batch_id,
            sha256="x",
            status=status,
            rows_in=1,
            started_at=now,
            finished_at=now,
        )
    )


def test_files_are_grouped_by_the_day_in_their_names(landing: Path) -> None:
    by_day = files_by_day(landing)

    assert {day: [p.name for p in files] for day, files in by_day.items()} == {
        date(2024, 3, 1): ["sales_2024-03-01.csv"],
        date(2024, 3, 2): ["returns_2024-03-02.parquet", "sales_2024-03-02.csv"],
        date(2024, 3, 3): ["sales_2024-03-03.csv"],
        date(2024, 3, 4): ["sales_2024-03-04.csv"],
    }


@pytest.mark.parametrize(
    ("reprocess", "runs"),
    [
        (Reprocess.MISSING, ["2024-03-02", "2024-03-03", "2024-03-04"]),
        (Reprocess.FAILED, ["2024-03-02", "2024-03-03"]),
        (Reprocess.ALL, ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]),
    ],
)
def test_the_plan_runs_what_reprocess_asks_for(
    landing: Path, tmp_path: Path, reprocess: Reprocess, runs: list[str]
) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    record(warehouse, "sales_2024-03-01.csv", BatchStatus.LOADED)
    record(warehouse, "sales_2024-03-02.csv", BatchStatus.LOADED)  # its sibling is new: partial
    record(warehouse, "sales_2024-03-03.csv", BatchStatus.FAILED)

    plan = plan_backfill(landing, date(2024, 3, 1), date(2024, 3, 5), reprocess, warehouse)

    assert [(p.day.isoformat(), p.state) for p in plan] == [
        ("2024-03-01", "loaded"),
        ("2024-03-02", "partial"),
        ("2024-03-03", "failed"),
        ("2024-03-04", "new"),
        ("2024-03-05", "no file"),
    ]
    assert [p.day.isoformat() for p in plan if p.run] == runs


def test_a_plan_on_a_new_warehouse_creates_nothing(landing: Path, tmp_path: Path) -> None:
    location = tmp_path / "none.duckdb"

    plan = plan_backfill(
        landing, date(2024, 3, 1), date(2024, 3, 1), Reprocess.MISSING, DuckDBWarehouse(location)
    )

    assert [(p.state, p.run) for p in plan] == [("new", True)]
    assert not location.exists()


def test_bad_ranges_and_folders_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="before --start"):
        days_between(date(2024, 3, 2), date(2024, 3, 1))
    with pytest.raises(UsageError, match="no such landing folder"):
        files_by_day(tmp_path / "missing")
