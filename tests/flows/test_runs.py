"""Every run leaves a record in the warehouse's `runs` table, written by the flow's state hooks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.options import RunOptions
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def test_a_completed_run_is_recorded_with_its_counts(tmp_path: Path, settings: Settings) -> None:
    write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,2,2.5,N")
    write_csv(tmp_path / "in" / "b.csv", "when,what", "2024-01-01,thing")

    summary = run_etl([tmp_path / "in"], settings)
    again = run_etl([tmp_path / "in"], settings)

    rows = DuckDBWarehouse(summary.warehouse).fetch(
        "SELECT flow_run_id, flow_name, state, batches, loaded, skipped, failed, rows_in, "
        "rows_loaded, amount_loaded, started_at <= finished_at FROM runs ORDER BY finished_at"
    )
    assert rows == [
        (summary.flow_run_id, "salesflow-etl", "Completed", 2, 1, 0, 1, 1, 1, Decimal("5"), True),
        (again.flow_run_id, "salesflow-etl", "Completed", 2, 0, 1, 1, 0, 0, Decimal("0"), True),
    ]


def test_a_failed_run_is_recorded_with_its_message(tmp_path: Path, settings: Settings) -> None:
    location = tmp_path / "wh.duckdb"
    DuckDBWarehouse(location).ensure_schema()
    source = write_csv(
        tmp_path / "in" / "a.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,2,2.5,N"
    )
    source.unlink()  # gone between discovery and the run: the flow itself fails

    with pytest.raises(Exception, match="no such file or directory"):
        run_etl([source], settings, RunOptions(warehouse=str(location)))

    assert DuckDBWarehouse(location).fetch(
        "SELECT state, batches, message LIKE '%no such file%' FROM runs"
    ) == [("Failed", 0, True)]
