"""`salesflow status` and the quality window: what Prefect says about runs, joined with what the
warehouse recorded, and which batches a window of days covers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from salesflow.manifest import BatchStatus
from salesflow.server import PrefectServer
from salesflow.status import RunCounts, read_quality_window, recent_runs, warehouse_counts
from salesflow.warehouse import DuckDBWarehouse
from tests.test_serve import api_of, day_file


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """An empty warehouse with the public tables."""
    path = tmp_path / "warehouse.duckdb"
    DuckDBWarehouse(path).ensure_schema()
    return path


def add_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    status: str,
    run_id: str,
    finished_at: datetime,
    rows_loaded: int = 0,
    rows_rejected: int = 0,
    error: str | None = None,
) -> None:
    rows_in = rows_loaded + rows_rejected if status != "failed" else None
    con.execute(
        "INSERT INTO batches (batch_id, source, sha256, rows_in, rows_loaded, rows_rejected, "
        "amount_loaded, status, error, contract_version, started_at, finished_at, flow_run_id) "
        "VALUES (?, ?, 'sha', ?, ?, ?, ?, ?, ?, '1', ?, ?, ?)",
        [
            batch_id,
            f"/landing/{batch_id}",
            rows_in,
            rows_loaded,
            rows_rejected,
            Decimal(rows_loaded) * 21,
            status,
            error,
            finished_at,
            finished_at,
            run_id,
        ],
    )


def add_sale(con: duckdb.DuckDBPyConnection, batch_id: str, day: date, row: int) -> None:
    con.execute(
        "INSERT INTO sales VALUES (?, ?, ?, 'C1', 'S1', 'P', 'C', 2, 10.5, 21, 'low', ?, "
        "'Friday', 'North', ?, ?)",
        [
            f"{batch_id}#{row}",
            datetime(day.year, day.month, day.day),
            day,
            f"{day:%Y-%m}",
            batch_id,
            row,
        ],
    )


def test_counts_come_from_the_runs_record_once_a_run_ended_and_from_batches_before(
    warehouse: Path,
) -> None:
    with duckdb.connect(str(warehouse)) as con:
        # Run A loaded the file and ended (its record keeps its counts); run B skipped it
        # since, taking the file's row in batches over; run C is still running.
        con.execute(
            "INSERT INTO runs VALUES ('A', 'salesflow-etl', 'Completed', now(), now(), "
            "1, 1, 0, 0, 7, 5, 2, 105, NULL)"
        )
        add_batch(con, "a.csv", "skipped", "B", datetime.now(UTC), rows_loaded=5, rows_rejected=2)
        add_batch(con, "c.csv", "loaded", "C", datetime.now(UTC), rows_loaded=3)
        add_batch(con, "d.csv", "failed", "C", datetime.now(UTC), error="d.csv: broken")

    counts = warehouse_counts(warehouse, ["A", "B", "C", "never-recorded"])

    assert counts == {
        "A": RunCounts(loaded=1, skipped=0, failed=0, rows_loaded=5, rows_rejected=2),
        "B": RunCounts(loaded=0, skipped=1, failed=0, rows_loaded=0, rows_rejected=0),
        "C": RunCounts(loaded=1, skipped=0, failed=1, rows_loaded=3, rows_rejected=0),
    }
    assert warehouse_counts(warehouse.with_name("none.duckdb"), ["A"]) == {}


def test_a_quality_window_covers_orders_of_its_days_and_batches_that_failed_in_them(
    warehouse: Path,
) -> None:
    inside = datetime(2024, 3, 2, 12, tzinfo=UTC)
    with duckdb.connect(str(warehouse)) as con:
        add_batch(con, "early.csv", "loaded", "R1", inside, rows_loaded=1)
        add_sale(con, "early.csv", date(2024, 2, 20), 1)
        add_batch(con, "day1.csv", "skipped", "R2", inside, rows_loaded=2, rows_rejected=1)
        add_sale(con, "day1.csv", date(2024, 3, 1), 1)
        add_sale(con, "day1.csv", date(2024, 3, 1), 2)
        con.execute("INSERT INTO sales_rejected VALUES ('day1.csv', 3, ['zero_quantity'], '{}')")
        add_batch(con, "broken.csv", "failed", "R3", inside, error="broken.csv: not CSV")
        add_batch(con, "old-failure.csv", "failed", "R0", datetime(2024, 1, 5, tzinfo=UTC))

    window = read_quality_window(warehouse, date(2024, 3, 1), date(2024, 3, 2), "Europe/Madrid")

    assert [(o.batch_id, o.status) for o in window.outcomes] == [
        ("broken.csv", BatchStatus.FAILED),
        ("day1.csv", BatchStatus.LOADED),  # unchanged since: its rows are loaded
    ]
    assert window.outcomes[1].reason_counts == {"zero_quantity": 1}
    assert window.samples == [("day1.csv", 3, ["zero_quantity"], "{}")]
    assert window.money == [(date(2024, 3, 1), 2, 4, Decimal("42.0000"), Decimal("0"))]
    assert "| 2024-03-01 | 2 | 4 | 42.00 | 0.00 |" in window.money_markdown()


def test_a_window_of_a_warehouse_not_created_yet_is_empty(tmp_path: Path) -> None:
    window = read_quality_window(tmp_path / "none.duckdb", date(2024, 3, 1), date(2024, 3, 2))

    assert (window.outcomes, window.samples, window.money) == ([], [], [])
    assert window.money_markdown() == "No orders dated in these days.\n\n"


@pytest.mark.e2e
def test_recent_runs_count_a_daily_runs_subflow_in_its_own_line(
    prefect_server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from salesflow.config import load_settings
    from salesflow.flows.etl import run_etl
    from salesflow.flows.scheduled import daily_flow

    monkeypatch.setenv("SALESFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SALESFLOW_RETRY_DELAY_SECONDS", "0")
    landing = tmp_path / "landing"
    day_file(landing, date(2024, 3, 1), rows=2)
    day_file(landing, date(2024, 3, 2), rows=3)

    with api_of(prefect_server):
        daily = daily_flow(day=date(2024, 3, 1), landing=landing, return_state=True)
        direct = run_etl([landing / "sales_2024-03-02.csv"], load_settings())
        runs = recent_runs(tmp_path / "data" / "warehouse.duckdb", limit=50)

    by_id = {run.flow_run_id: run for run in runs}
    etl_child = daily.result().flow_run_id
    parent = by_id[str(daily.state_details.flow_run_id)]
    assert (parent.flow_name, parent.state) == ("salesflow-daily", "Completed")
    assert parent.counts == RunCounts(loaded=1, rows_loaded=2)
    assert parent.duration is not None and parent.started_at is not None
    assert etl_child not in by_id  # a subflow is counted in its parent's line, not its own
    assert direct.flow_run_id is not None
    assert by_id[direct.flow_run_id].flow_name == "salesflow-etl"
    assert by_id[direct.flow_run_id].counts == RunCounts(loaded=1, rows_loaded=3)
    assert runs.index(by_id[direct.flow_run_id]) < runs.index(parent)  # newest first
