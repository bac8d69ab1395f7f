"""`salesflow status` and the quality window: what Prefect says about runs, joined with what the
warehouse recorded, and which batches a window of days covers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from salesflow.flows.run_history import recent_runs
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.server import PrefectServer
from salesflow.status import QualityWindow, RunCounts, read_quality_window, warehouse_counts
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from salesflow.warehouse.base import RunRecord, Warehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema
from tests.test_serve import api_of, day_file
from tests.warehouse.batches import staged


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

    counts = warehouse_counts(DuckDBWarehouse(warehouse), ["A", "B", "C", "never-recorded"])

    assert counts == {
        "A": RunCounts(loaded=1, skipped=0, failed=0, rows_loaded=5, rows_rejected=2),
        "B": RunCounts(loaded=0, skipped=1, failed=0, rows_loaded=0, rows_rejected=0),
        "C": RunCounts(loaded=1, skipped=0, failed=1, rows_loaded=3, rows_rejected=0),
    }
    missing = DuckDBWarehouse(warehouse.with_name("none.duckdb"))
    assert warehouse_counts(missing, ["A"]) == {}
    assert not missing.path.exists()


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

    window = read_quality_window(
        DuckDBWarehouse(warehouse), date(2024, 3, 1), date(2024, 3, 2), "Europe/Madrid"
    )

    assert [(o.batch_id, o.status) for o in window.outcomes] == [
        ("broken.csv", BatchStatus.FAILED),
        ("day1.csv", BatchStatus.LOADED),  # unchanged since: its rows are loaded
    ]
    assert window.outcomes[1].reason_counts == {"zero_quantity": 1}
    assert window.samples == [("day1.csv", 3, ["zero_quantity"], "{}")]
    assert window.money == [(date(2024, 3, 1), 2, 4, Decimal("42.0000"), Decimal("0"))]
    assert "| 2024-03-01 | 2 | 4 | 42.00 | 0.00 |" in window.money_markdown()


def test_a_window_of_a_warehouse_not_created_yet_is_empty(tmp_path: Path) -> None:
    missing = DuckDBWarehouse(tmp_path / "none.duckdb")
    window = read_quality_window(missing, date(2024, 3, 1), date(2024, 3, 2))

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
        runs = recent_runs(DuckDBWarehouse(tmp_path / "data" / "warehouse.duckdb"), limit=50)

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


# --- the same answers from a PostgreSQL warehouse ---------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this module, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres(database: str) -> Iterator[PostgresWarehouse]:
    """A PostgreSQL warehouse in its own schema, dropped after the test."""
    with fresh_schema(database) as url:
        yield PostgresWarehouse(url)


def fill(warehouse: Warehouse, tmp_path: Path) -> None:
    """The same history in any warehouse: run R1 loaded two files (one with rejects) and
    ended; run R2 is still running and has a failed batch; an older batch is out of the window."""
    landing = tmp_path / "landing"
    files = [
        write_csv(
            landing / "sales_a.csv",
            CANONICAL_HEADER,
            "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
            "O2,2024-03-01T11:00:00,C1,S2,Mug,Home,0,3.25,North",
            "O3,2024-03-01T12:00:00,C2,S1,Kettle,Home,-1,10.50,North",
        ),
        write_csv(
            landing / "Sales_b.csv",
            CANONICAL_HEADER,
            "O4,2024-03-02T09:00:00,C2,S3,Lamp,,3,40,South",
            "O5,2024-03-02T09:30:00,C2,S3,Lamp,,1,40,",
        ),
        write_csv(
            landing / "early.csv", CANONICAL_HEADER, "O0,2024-02-20T09:00:00,C2,S3,Lamp,,1,40,South"
        ),
    ]
    stage = tmp_path / type(warehouse).__name__
    for source in files:
        run = "R0" if source.name == "early.csv" else "R1"
        warehouse.load_batch(staged(source, stage / source.stem), run)
    warehouse.record_run(RunRecord("R1", "salesflow-etl", "Completed"))
    failed_at = datetime(2024, 3, 2, 12, tzinfo=UTC)
    warehouse.record_outcome(
        BatchOutcome(
            batch_id="broken.csv",
            source="/landing/broken.csv",
            sha256="x",
            status=BatchStatus.FAILED,
            error="broken.csv: not CSV",
            started_at=failed_at,
            finished_at=failed_at,
            flow_run_id="R2",
        )
    )


def comparable(window: QualityWindow) -> tuple[object, ...]:
    """A window without the load times, which differ between two loads of the same files."""
    outcomes = [
        (
            o.batch_id,
            o.status,
            o.rows_in,
            o.rows_loaded,
            o.rows_rejected,
            o.amount_loaded,
            o.reason_counts,
            o.error,
            o.flow_run_id,
        )
        for o in window.outcomes
    ]
    return outcomes, window.samples, window.money, window.money_markdown()


def test_status_counts_from_postgres_equal_those_from_duckdb(
    postgres: PostgresWarehouse, tmp_path: Path
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    runs = ["R1", "R2", "never-recorded"]
    assert warehouse_counts(postgres, runs) == {}  # nothing loaded yet: no tables to read
    for target in (postgres, duck):
        fill(target, tmp_path)

    counts = warehouse_counts(postgres, runs)

    assert counts == warehouse_counts(duck, runs)
    assert counts == {
        "R1": RunCounts(loaded=2, rows_loaded=3, rows_rejected=2),
        "R2": RunCounts(failed=1),
    }


def test_a_quality_window_from_postgres_equals_the_one_from_duckdb(
    postgres: PostgresWarehouse, tmp_path: Path
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    first, last = date(2024, 3, 1), date(2024, 3, 2)
    empty = read_quality_window(postgres, first, last)
    assert (empty.outcomes, empty.samples, empty.money) == ([], [], [])
    for target in (postgres, duck):
        fill(target, tmp_path)

    window = read_quality_window(postgres, first, last, "Europe/Madrid")

    assert comparable(window) == comparable(read_quality_window(duck, first, last, "Europe/Madrid"))
    assert [(o.batch_id, o.status) for o in window.outcomes] == [
        ("Sales_b.csv", BatchStatus.LOADED),  # byte order, whatever the collation
        ("broken.csv", BatchStatus.FAILED),
        ("sales_a.csv", BatchStatus.LOADED),
    ]
    assert window.outcomes[0].reason_counts == {"missing_region": 1}
    assert window.outcomes[2].reason_counts == {"zero_quantity": 1}
    assert [(batch, row) for batch, row, _, _ in window.samples] == [
        ("Sales_b.csv", 2),
        ("sales_a.csv", 2),
    ]
    assert window.money == [
        (date(2024, 3, 1), 2, 1, Decimal("10.5"), Decimal("10.5")),
        (date(2024, 3, 2), 1, 3, Decimal("120"), Decimal("0")),
    ]
