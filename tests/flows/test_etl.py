"""The salesflow-etl flow end to end on a real Prefect API (test harness) and real DuckDB files."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.run_summary import RunSummary
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, COURSE_CSV, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

TABLES = ("sales", "sales_rejected", "daily_sales")


def warehouse_of(summary: RunSummary) -> DuckDBWarehouse:
    return DuckDBWarehouse(summary.warehouse)


def checksums(warehouse: DuckDBWarehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in TABLES}


@pytest.fixture(scope="module")
def dirty_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("landing")
    generate_sales(landing, date(2024, 5, 1), 4, 300, seed=7, dirty_ratio=0.08, fmt="csv")
    return landing


def test_every_row_of_dirty_input_lands_in_exactly_one_table(
    dirty_landing: Path, settings: Settings
) -> None:
    summary = run_etl([dirty_landing], settings, RunOptions(accept_rejects=True))

    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED] * 4
    warehouse = warehouse_of(summary)
    for outcome in summary.outcomes:
        data_lines = len((dirty_landing / outcome.batch_id).read_text().splitlines()) - 1
        assert outcome.rows_in == data_lines
        assert outcome.rows_loaded + outcome.rows_rejected == data_lines
        assert outcome.rows_rejected > 0
        rows = warehouse.fetch(
            "SELECT source_row FROM sales WHERE batch_id = ? "
            "UNION ALL SELECT source_row FROM sales_rejected WHERE batch_id = ? ORDER BY 1",
            [outcome.batch_id, outcome.batch_id],
        )
        assert [row[0] for row in rows] == list(range(1, data_lines + 1))


def test_money_loaded_matches_an_independent_computation_from_the_raw_files(
    dirty_landing: Path, settings: Settings
) -> None:
    summary = run_etl([dirty_landing], settings, RunOptions(accept_rejects=True))

    with duckdb.connect(summary.warehouse, read_only=True) as con:
        for outcome in summary.outcomes:
            raw_total = con.execute(
                "WITH raw AS (SELECT row_number() OVER () AS source_row, * FROM read_csv(?, "
                "all_varchar = true)) "
                "SELECT sum(CAST(raw.quantity AS BIGINT) * CAST(raw.unit_price AS DECIMAL(18, 4))) "
                "FROM raw JOIN sales s ON s.batch_id = ? AND s.source_row = raw.source_row",
                [str(dirty_landing / outcome.batch_id), outcome.batch_id],
            ).fetchone()
            assert raw_total is not None
            assert raw_total[0] == outcome.amount_loaded
            (recorded,) = con.execute(
                "SELECT amount_loaded FROM batches WHERE batch_id = ?", [outcome.batch_id]
            ).fetchone() or (None,)
            assert recorded == outcome.amount_loaded


def test_rerunning_leaves_the_warehouse_identical_and_skips_unchanged_files(
    dirty_landing: Path, settings: Settings
) -> None:
    first = run_etl([dirty_landing], settings, RunOptions(accept_rejects=True))
    before = checksums(warehouse_of(first))

    second = run_etl([dirty_landing], settings, RunOptions(accept_rejects=True))
    forced = run_etl([dirty_landing], settings, RunOptions(force=True, accept_rejects=True))

    assert [o.status for o in second.outcomes] == [BatchStatus.SKIPPED] * 4
    assert [o.status for o in forced.outcomes] == [BatchStatus.LOADED] * 4
    assert checksums(warehouse_of(forced)) == before
    assert warehouse_of(forced).fetch("SELECT count(*), count(DISTINCT batch_id) FROM batches") == [
        (4, 4)
    ]


def test_verify_finds_a_file_rewritten_under_its_old_size_and_mtime(
    tmp_path: Path, settings: Settings
) -> None:
    day = write_csv(
        tmp_path / "landing" / "day.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
    )
    run_etl([day], settings, RunOptions())
    before = day.stat()
    day.write_text(day.read_text().replace("10.50", "10.75"))  # same size
    os.utime(day, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` do

    trusting = run_etl([day], settings, RunOptions())
    verified = run_etl([day], settings, RunOptions(verify=True))

    assert [o.status for o in trusting.outcomes] == [BatchStatus.SKIPPED]
    assert [o.status for o in verified.outcomes] == [BatchStatus.LOADED]
    assert warehouse_of(verified).fetch("SELECT unit_price FROM sales") == [(Decimal("10.75"),)]


def test_the_course_spanish_csv_loads_unchanged(settings: Settings) -> None:
    summary = run_etl([COURSE_CSV], settings, RunOptions(accept_rejects=True))

    (outcome,) = summary.outcomes
    assert (outcome.status, outcome.rows_in, outcome.rows_loaded, outcome.rows_rejected) == (
        BatchStatus.LOADED,
        13,
        8,
        5,
    )
    assert outcome.amount_loaded == Decimal("6306.2500")
    warehouse = warehouse_of(summary)
    assert warehouse.fetch("SELECT order_id, sku, product, quantity FROM sales LIMIT 2") == [
        (f"{COURSE_CSV}#1", "Laptop", "Laptop", 2),  # outside the landing root: its full path
        (f"{COURSE_CSV}#2", "Mouse", "Mouse", 10),
    ]
    assert warehouse.fetch("SELECT source_row, reasons FROM sales_rejected ORDER BY 1") == [
        (8, ["missing_quantity"]),
        (9, ["missing_region"]),
        (10, ["negative_price"]),
        (11, ["zero_quantity"]),
        (13, ["duplicate"]),
    ]


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet", "jsonl"])
def test_every_file_format_loads_the_same_sales_as_csv(
    fmt: str, tmp_path: Path, settings: Settings
) -> None:
    generate_sales(tmp_path / "csv", date(2024, 6, 3), 1, 200, seed=3, dirty_ratio=0.1, fmt="csv")
    generate_sales(tmp_path / fmt, date(2024, 6, 3), 1, 200, seed=3, dirty_ratio=0.1, fmt=fmt)
    columns = "order_id, order_ts, sku, quantity, unit_price, total, region, source_row"

    as_csv = run_etl(
        [tmp_path / "csv"],
        settings,
        RunOptions(warehouse=str(tmp_path / "csv.duckdb"), accept_rejects=True),
    )
    as_fmt = run_etl(
        [tmp_path / fmt],
        settings,
        RunOptions(warehouse=str(tmp_path / "fmt.duckdb"), accept_rejects=True),
    )

    query = f"SELECT {columns} FROM sales ORDER BY source_row"
    expected = warehouse_of(as_csv).fetch(query)
    assert len(expected) > 150
    assert warehouse_of(as_fmt).fetch(query) == expected
    rejected = "SELECT source_row, reasons FROM sales_rejected ORDER BY source_row"
    assert warehouse_of(as_fmt).fetch(rejected) == warehouse_of(as_csv).fetch(rejected)


def test_an_unreadable_file_fails_alone_and_the_others_still_load(
    tmp_path: Path, settings: Settings
) -> None:
    good = write_csv(
        tmp_path / "in" / "a_good.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,9.99,N"
    )
    bad = write_csv(tmp_path / "in" / "b_bad.csv", "when,what", "2024-01-01,thing")

    summary = run_etl([good, bad], settings)

    assert [(o.batch_id, o.status) for o in summary.outcomes] == [
        ("in/a_good.csv", BatchStatus.LOADED),
        ("in/b_bad.csv", BatchStatus.FAILED),
    ]
    error = summary.outcomes[1].error
    assert error == (
        f"{bad}: missing required columns 'order_ts', 'quantity', 'unit_price', 'region' "
        "(found: when, what)"
    )
    warehouse = warehouse_of(summary)
    assert warehouse.fetch("SELECT batch_id, status, error FROM batches ORDER BY 1") == [
        ("in/a_good.csv", "loaded", None),
        ("in/b_bad.csv", "failed", error),
    ]
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(1,)]


def test_a_busy_warehouse_is_retried_until_it_is_free(tmp_path: Path, settings: Settings) -> None:
    source = write_csv(
        tmp_path / "in" / "day.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,5,N"
    )
    location = tmp_path / "busy.duckdb"
    DuckDBWarehouse(location).ensure_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            # Long enough that the run meets it even on a loaded machine; the retries
            # (0.5 s doubling: 31 s in all) outlast it.
            "print('ready', flush=True); time.sleep(8); c.close()",
            str(location),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    patient = settings.model_copy(update={"retries": 6, "retry_delay_seconds": 0.5})
    try:
        summary = run_etl([source], patient, RunOptions(warehouse=str(location)))
    finally:
        holder.wait(timeout=30)

    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED]
    assert task_run_counts(summary.flow_run_id)["prepare-warehouse"] > 1


def test_bad_data_is_never_retried(tmp_path: Path, settings: Settings) -> None:
    bad = write_csv(tmp_path / "in" / "bad.csv", "when,what", "2024-01-01,thing")
    patient = settings.model_copy(update={"retries": 3})

    summary = run_etl([bad], patient)

    assert [o.status for o in summary.outcomes] == [BatchStatus.FAILED]
    assert task_run_counts(summary.flow_run_id)["extract-validate"] == 1


def test_each_stage_is_linked_to_the_stage_that_fed_it(settings: Settings) -> None:
    summary = run_etl([COURSE_CSV], settings, RunOptions(accept_rejects=True))

    runs = read_task_runs(summary.flow_run_id)
    stage_of = {run.id: stage_name(run) for run in runs}
    upstream = {
        stage_name(run): sorted(
            {
                stage_of[given.id]
                for inputs in run.task_inputs.values()
                for given in inputs
                if getattr(given, "input_type", None) == "task_run"
            }
        )
        for run in runs
    }
    # The warehouse location returned by prepare-warehouse feeds the one read of what is
    # loaded, the loads and the KPI check; a plan needs its file and that read's answer; the
    # batch ids the loads returned tell the check which days to look at.
    assert upstream == {
        "prepare-warehouse": [],
        "read-fingerprints": ["prepare-warehouse"],
        "plan": ["read-fingerprints"],
        "extract-validate": ["plan"],
        "load": ["extract-validate", "prepare-warehouse"],
        "check-kpis": ["load", "prepare-warehouse"],
    }
    # No tags: each would cost a concurrency-slot round trip per task run (see flows/tasks.py).
    assert [run.tags for run in runs] == [[]] * len(runs)


def stage_name(run: Any) -> str:
    return str(run.name).rsplit("-", 1)[0]


def read_task_runs(flow_run_id: str | None) -> list[Any]:
    """The task runs of one flow run, read back from the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        return list(
            client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        )


def task_run_counts(flow_run_id: str | None) -> dict[str, int]:
    """How many times each stage's task ran in a flow run."""
    counts: dict[str, int] = {}
    for run in read_task_runs(flow_run_id):
        counts[stage_name(run)] = max(counts.get(stage_name(run), 0), run.run_count)
    return counts
