"""The PostgreSQL warehouse on the local server: the DuckDB warehouse's guarantees (atomic batch
replace, reconciliation, the mart, failure records, undo), plus what a shared server adds:
writers taking turns on the advisory lock, a lost connection being transient, no password in
the location."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from salesflow import stages
from salesflow.contract import CONTRACT_VERSION
from salesflow.errors import (
    LoadTimeoutError,
    ReconciliationError,
    RejectThresholdError,
    TransientError,
    UsageError,
    WarehouseUnavailableError,
)
from salesflow.manifest import BatchManifest, BatchStatus
from salesflow.transform import TicketBands
from salesflow.validate import ValidationRules
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse, open_warehouse
from salesflow.warehouse.base import LoadPolicy
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema, with_schema

TABLES = ("sales", "sales_rejected", "daily_sales")


def staged(source: Path, staging: Path) -> BatchManifest:
    """Run a file through extract, validate and transform, ready to load."""
    manifest = stages.extract(source, staging, force=True)
    return stages.transform(stages.validate(manifest, ValidationRules()), TicketBands())


def checksums(warehouse: PostgresWarehouse | DuckDBWarehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in (*TABLES, "batches")}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database for this module on the local PostgreSQL, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def warehouse(database: str) -> Iterator[PostgresWarehouse]:
    """A warehouse in its own schema, dropped after the test."""
    with fresh_schema(database) as url:
        yield PostgresWarehouse(url)


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


@pytest.fixture
def admin(database: str) -> Iterator[psycopg.Connection[Any]]:
    """A separate connection to the same database: another session holding locks, or the
    operator terminating a backend."""
    with psycopg.connect(database, autocommit=True) as con:
        yield con


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def load_waiting_on_a_lock(admin: psycopg.Connection[Any], locktype: str) -> int | None:
    """The pid of a salesflow backend of this database waiting for a lock of that type."""
    admin.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot
    row = admin.execute(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE a.application_name = 'salesflow' AND a.datname = current_database() "
        "AND NOT l.granted AND l.locktype = %s",
        [locktype],
    ).fetchone()
    return int(row[0]) if row else None


# --- the location -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_part",
    ["{user}:s3cr%40t@{host}?sslmode=prefer", "{user}@{host}?password=s3cr@t&sslmode=prefer"],
)
def test_the_location_never_holds_the_password_but_the_process_keeps_it(
    database: str, secret_part: str
) -> None:
    user, host = database.split("://", 1)[1].split("@", 1)
    url = "postgres://" + secret_part.format(user=user, host=host) + "&schema=analytics"

    warehouse = open_warehouse(url)

    assert isinstance(warehouse, PostgresWarehouse)
    assert warehouse.location == f"postgresql://{user}@{host}?sslmode=prefer&schema=analytics"
    assert "s3cr" not in repr(warehouse)
    # A task reopening the warehouse by its location, in this process, still connects with it
    # (the local server trusts any password, so libpq's record of what it sent is the proof).
    reopened = open_warehouse(warehouse.location)
    assert isinstance(reopened, PostgresWarehouse)
    assert reopened.location == warehouse.location
    with reopened._connect() as con:
        assert con.info.password == "s3cr@t"


def test_a_url_picks_postgres_and_anything_else_duckdb(tmp_path: Path) -> None:
    assert isinstance(open_warehouse("postgresql://u@h/db"), PostgresWarehouse)
    assert open_warehouse("postgresql://u@h/db").location == "postgresql://u@h/db?schema=salesflow"
    assert isinstance(open_warehouse(str(tmp_path / "w.duckdb")), DuckDBWarehouse)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u@h/db?schema=Bad-Name", "schema 'Bad-Name' is not a plain name"),
        ("postgresql://u@h/db?schema=x;drop", "is not a plain name"),
        (
            "postgresql://u@h/db?colour=blue",
            'bad PostgreSQL URL (invalid URI query parameter: "colour")',
        ),
    ],
)
def test_a_bad_url_is_a_one_line_usage_error(url: str, problem: str) -> None:
    with pytest.raises(UsageError) as raised:
        PostgresWarehouse(url)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_database_is_a_usage_error_and_a_refused_connection_transient(
    database: str,
) -> None:
    missing = database.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(UsageError, match='database "no_such_database_here" does not exist'):
        PostgresWarehouse(missing).ensure_schema()

    with pytest.raises(WarehouseUnavailableError, match="PostgreSQL unreachable") as raised:
        PostgresWarehouse("postgresql://postgres@127.0.0.1:1/test").fetch("SELECT 1")
    assert isinstance(raised.value, TransientError)


# --- loading ------------------------------------------------------------------------------


def test_load_writes_valid_rows_rejects_and_batch_record(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
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
        "SELECT order_id, sku, total, ticket_size, order_ts FROM sales ORDER BY source_row"
    ) == [
        ("O1", "S1", Decimal("21.0000"), "low", _ts("2024-03-01 10:00")),
        ("O1", "S2", Decimal("3.2500"), "low", _ts("2024-03-01 10:00")),
        ("O2", "S1", Decimal("-10.5000"), "return", _ts("2024-03-01 11:00")),
        ("O3", "S3", Decimal("120.0000"), "medium", _ts("2024-03-02 09:00")),
    ]
    assert warehouse.fetch("SELECT source_row, reasons FROM sales_rejected ORDER BY 1") == [
        (5, ["zero_quantity"]),
        (6, ["duplicate"]),
    ]
    assert warehouse.fetch(
        "SELECT batch_id, rows_in, rows_loaded, rows_rejected, amount_loaded, status, error, "
        "contract_version, flow_run_id FROM batches"
    ) == [("day1.csv", 6, 4, 2, Decimal("133.7500"), "loaded", None, CONTRACT_VERSION, "run-1")]
    assert warehouse.read_back("day1.csv").mismatch(outcome) is None


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_daily_sales_mart_counts_orders_units_revenue_and_returns(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), None)

    assert warehouse.fetch("SELECT * FROM daily_sales ORDER BY order_date") == [
        (date(2024, 3, 1), "North", "Home", 2, 2, Decimal("13.7500"), Decimal("10.5000")),
        (date(2024, 3, 2), "South", None, 1, 3, Decimal("120.0000"), Decimal("0")),
    ]


def test_reloading_a_batch_leaves_the_warehouse_identical(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)

    warehouse.load_batch(staged(day_file, tmp_path / "second"), "run-1")

    after = checksums(warehouse)
    assert {t: after[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert warehouse.fetch("SELECT count(*) FROM batches") == [(1,)]


def test_changed_file_replaces_its_batch_and_clears_mart_dates_it_no_longer_has(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
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
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    tampered = staged(day_file, tmp_path / "second").model_copy(update={"amount": Decimal("1")})

    expected = r"amount loaded 133\.7500 != amount transformed 1"
    with pytest.raises(ReconciliationError, match=expected):
        warehouse.load_batch(tampered, "run-2")

    assert checksums(warehouse) == before


def test_money_is_recomputed_from_the_raw_text_not_taken_from_the_transform(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    import polars as pl

    manifest = staged(day_file, tmp_path / "stage")
    # A transform bug that doubles every total, with a manifest that agrees with it.
    sales = pl.read_parquet(manifest.sales_path)
    sales.with_columns(pl.col("total") * 2).write_parquet(manifest.sales_path)
    doubled = manifest.model_copy(update={"amount": manifest.amount * 2})

    with pytest.raises(ReconciliationError, match=r"amount from the raw input 133\.7500"):
        warehouse.load_batch(doubled, "run-1")

    assert warehouse.fetch("SELECT count(*) FROM sales") == [(0,)]


def test_crash_in_the_middle_of_a_load_rolls_back_to_the_previous_state(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    broken = staged(day_file, tmp_path / "second")
    broken.rejected_path.unlink()  # sales rows get inserted, then reading rejects fails

    with pytest.raises(Exception, match=r"rejected\.parquet"):
        warehouse.load_batch(broken, "run-2")

    assert checksums(warehouse) == before


def test_too_many_rejects_fail_the_batch_and_load_nothing(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    strict = LoadPolicy(max_reject_share=0.2)

    with pytest.raises(
        RejectThresholdError, match=r"2 of 6 rows rejected \(33\.3%.*zero_quantity 1"
    ):
        warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1", strict)

    assert warehouse.fetch("SELECT count(*) FROM sales UNION ALL SELECT count(*) FROM batches") == [
        (0,),
        (0,),
    ]
    accepted = LoadPolicy(max_reject_share=0.2, accept_rejects=True)
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "again"), "run-2", accepted)
    assert loaded.status == BatchStatus.LOADED


def test_a_failed_attempt_keeps_the_loaded_rows_and_is_not_taken_as_loaded(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
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


def test_content_another_run_loaded_meanwhile_is_skipped_not_loaded_twice(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
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


# --- duplicates across batches: the same rule as DuckDB -------------------------------------


def test_rows_another_batch_loaded_are_quarantined_exactly_as_duckdb_does(
    warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    first = write_csv(
        landing / "a.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C1,S2,Mug,,1,3.25,North",
    )
    later = write_csv(
        landing / "b.csv",
        "region,order_id,order_ts,sku,product,category,quantity,unit_price,customer_id",
        "North,O1,2024-03-01T10:00:00,S1,Kettle,Home,2,10.5000,",  # a.csv's first row
        "North,O2,2024-03-01T11:00:00,S2,Mug,,1,3.25,C9",  # differs in customer_id only
        "North,O3,2024-03-01T12:00:00,S3,Lamp,,1,40,",
    )
    duck = DuckDBWarehouse(tmp_path / "duck.duckdb")
    outcomes = {}
    for target in (warehouse, duck):
        for source in (first, later):
            manifest = staged(source, tmp_path / type(target).__name__ / source.stem)
            outcomes[type(target).__name__, source.name] = target.load_batch(manifest, "run-1")

    moved = outcomes["PostgresWarehouse", "b.csv"]
    assert (moved.rows_loaded, moved.rows_rejected, moved.amount_loaded) == (2, 1, Decimal("43.25"))
    assert moved.reason_counts == {"duplicate_in_warehouse": 1}
    rejected = "SELECT batch_id, source_row, reasons, raw FROM sales_rejected ORDER BY 1, 2"
    assert (
        warehouse.fetch(rejected)
        == duck.fetch(rejected)
        == [
            (
                "b.csv",
                1,
                ["duplicate_in_warehouse"],
                '{"region":"North","order_id":"O1","order_ts":"2024-03-01T10:00:00","sku":"S1",'
                '"product":"Kettle","category":"Home","quantity":"2","unit_price":"10.5000",'
                '"customer_id":null}',
            )
        ]
    )
    rows = "SELECT batch_id, source_row, total FROM sales ORDER BY 1, 2"
    assert warehouse.fetch(rows) == duck.fetch(rows)
    assert warehouse.fetch("SELECT * FROM daily_sales") == duck.fetch("SELECT * FROM daily_sales")
    # The dry run finds the same row before a load of b.csv would move it.
    again = staged(later, tmp_path / "dry")
    assert warehouse.loaded_duplicates(again) == duck.loaded_duplicates(again) == [1]

    off = LoadPolicy(reject_duplicates_in_warehouse=False)
    kept = warehouse.load_batch(staged(later, tmp_path / "off"), "run-2", off)
    assert (kept.rows_loaded, kept.rows_rejected) == (3, 0)


# --- time limits, undo, read back -----------------------------------------------------------


def test_a_load_past_its_time_limit_is_cancelled_and_rolled_back(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")
    manifest = staged(day_file, tmp_path / "second")
    table = sql.Identifier(warehouse.schema, "sales")

    with admin.transaction():  # another session holds `sales`: the load cannot finish in time
        admin.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        started = time.monotonic()
        with pytest.raises(LoadTimeoutError, match=r"longer than 0\.3 s and was rolled back"):
            warehouse.load_batch(manifest, "run-2", LoadPolicy(timeout_seconds=0.3))
        assert time.monotonic() - started < 5

    assert checksums(warehouse) == before


def test_restoring_the_previous_version_undoes_a_committed_load(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")
    undo = tmp_path / "undo" / "day1.csv"
    replaced = warehouse.load_batch(staged(day_file, tmp_path / "second"), "run-2", undo_dir=undo)
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(1,)]

    assert warehouse.restore_previous_version(replaced, undo) is True

    assert checksums(warehouse) == before  # rows, rejects, the mart and the batches row
    # Once replaced by a later load, a stale rollback leaves that load alone.
    newer = warehouse.load_batch(staged(day_file, tmp_path / "third"), "run-3")
    assert warehouse.restore_previous_version(replaced, undo) is False
    assert warehouse.read_back("day1.csv").mismatch(newer) is None


def test_rolling_back_a_first_load_leaves_no_trace_of_the_batch(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    undo = tmp_path / "undo"
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1", undo_dir=undo)

    assert warehouse.restore_previous_version(loaded, undo) is True

    assert warehouse.fetch(
        "SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM sales_rejected), "
        "(SELECT count(*) FROM daily_sales), (SELECT count(*) FROM batches)"
    ) == [(0, 0, 0, 0)]


def test_runs_are_recorded_with_counts_from_their_batches(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    warehouse.record_run("run-1", "salesflow-etl", "Completed", None, None)
    warehouse.record_run("run-1", "salesflow-etl", "Completed", None, "rewritten")

    assert warehouse.fetch(
        "SELECT flow_run_id, state, batches, loaded, rows_in, rows_loaded, rows_rejected, "
        "amount_loaded, message FROM runs"
    ) == [("run-1", "Completed", 1, 1, 6, 4, 2, Decimal("133.7500"), "rewritten")]


def test_fetch_takes_the_queries_the_flow_writes_for_duckdb(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    # The quality artifact's sample query, as flows/artifacts.py sends it.
    assert warehouse.fetch(
        "SELECT batch_id, source_row FROM sales_rejected WHERE list_contains(?, batch_id) "
        "AND raw NOT LIKE '%?%' ORDER BY batch_id, source_row LIMIT ?",
        [["day1.csv", "other.csv"], 1],
    ) == [("day1.csv", 5)]
    assert warehouse.fetch("SELECT count(*) FROM sales WHERE sku LIKE 'S%'") == [(4,)]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        warehouse.fetch("DELETE FROM sales")


def test_checksum_is_refused_for_unknown_tables(warehouse: PostgresWarehouse) -> None:
    with pytest.raises(ValueError, match="no checksum defined"):
        warehouse.table_checksum("sales; DROP TABLE sales")


# --- several writers, a lost connection -----------------------------------------------------


def test_a_writer_waits_for_the_advisory_lock_another_session_holds(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    warehouse.ensure_schema()
    manifest = staged(day_file, tmp_path / "stage")
    with ThreadPoolExecutor(1) as pool:
        with admin.transaction():
            admin.execute("SELECT pg_advisory_xact_lock(%s)", [warehouse.lock_key])
            pending = pool.submit(warehouse.load_batch, manifest, "run-1")
            wait_for(lambda: load_waiting_on_a_lock(admin, "advisory") is not None)
            time.sleep(0.3)
            assert not pending.done()
            assert warehouse.fetch("SELECT count(*) FROM sales") == [(0,)]  # readers never wait
        assert pending.result(timeout=30).status == BatchStatus.LOADED


def test_concurrent_writers_take_turns_and_keep_a_shared_row_once(
    warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    shared = "S0,2024-03-01T09:00:00,C0,SKU0,Kettle,Home,1,10.00,North"
    manifests = []
    for number in range(4):
        own = [
            f"O{number}-{row},2024-03-01T10:{row // 60:02d}:{row % 60:02d},C{row},SKU{row},"
            f"P,Cat,{row % 9 + 1},2.50,South"
            for row in range(300)
        ]
        source = write_csv(tmp_path / "in" / f"f{number}.csv", CANONICAL_HEADER, shared, *own)
        manifests.append(staged(source, tmp_path / "stage" / str(number)))
    warehouse.ensure_schema()
    start = threading.Barrier(len(manifests))

    def load(manifest: BatchManifest) -> Any:
        start.wait()
        return warehouse.load_batch(manifest, "run-1")

    with ThreadPoolExecutor(len(manifests)) as pool:
        futures: list[Future[Any]] = [pool.submit(load, m) for m in manifests]
        outcomes = [future.result(timeout=60) for future in futures]

    assert all(outcome.status == BatchStatus.LOADED for outcome in outcomes)
    assert warehouse.fetch("SELECT count(*) FROM sales WHERE order_id = 'S0'") == [(1,)]
    assert warehouse.fetch("SELECT count(*), min(reasons[1]) FROM sales_rejected") == [
        (3, "duplicate_in_warehouse")
    ]
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(4 * 300 + 1,)]


def test_a_backend_terminated_mid_load_is_transient_and_the_retry_loads(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")
    manifest = staged(day_file, tmp_path / "second")
    table = sql.Identifier(warehouse.schema, "sales_rejected")

    # The load stops inside its transaction, on a lock another session holds.
    with ThreadPoolExecutor(1) as pool, admin.transaction():
        admin.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        pending = pool.submit(warehouse.load_batch, manifest, "run-2")
        wait_for(lambda: load_waiting_on_a_lock(admin, "relation") is not None)
        pid = load_waiting_on_a_lock(admin, "relation")
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(WarehouseUnavailableError, match="lost the connection") as raised:
            pending.result(timeout=30)
    assert isinstance(raised.value, TransientError)  # the load task retries it

    assert checksums(warehouse) == before
    retried = warehouse.load_batch(manifest, "run-2")
    assert warehouse.read_back("day1.csv").mismatch(retried) is None
    assert warehouse.fetch("SELECT order_id FROM sales") == [("O9",)]


# --- read paths shared with DuckDB ----------------------------------------------------------


def test_holds_data_only_once_the_tables_exist_and_an_unreachable_server_raises(
    warehouse: PostgresWarehouse, database: str, tmp_path: Path
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    assert (warehouse.holds_data(), duck.holds_data()) == (False, False)
    assert not duck.path.exists()  # asking does not create the file

    warehouse.ensure_schema()
    duck.ensure_schema()

    assert (warehouse.holds_data(), duck.holds_data()) == (True, True)
    # Another schema of the same database is still empty.
    other = PostgresWarehouse(with_schema(database, f"t_{uuid.uuid4().hex[:12]}"))
    assert not other.holds_data()
    with pytest.raises(WarehouseUnavailableError, match="PostgreSQL unreachable"):
        PostgresWarehouse("postgresql://postgres@127.0.0.1:1/test").holds_data()
    missing = database.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(UsageError, match="does not exist"):
        PostgresWarehouse(missing).holds_data()


def test_a_users_query_gives_the_same_columns_and_rows_as_on_duckdb(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    for target in (warehouse, duck):
        target.load_batch(staged(day_file, tmp_path / type(target).__name__), "run-1")
    by_region = (
        "SELECT region, count(*) AS n, sum(total) AS revenue FROM sales "
        "WHERE sku LIKE 'S%' AND product <> '?' GROUP BY region ORDER BY region"
    )

    assert (
        warehouse.query(by_region, 10)
        == duck.query(by_region, 10)
        == (["region", "n", "revenue"], [("North", 3, Decimal("13.75")), ("South", 1, 120)])
    )
    assert warehouse.query(by_region, 1) == duck.query(by_region, 1)
    assert len(warehouse.query(by_region, 1).rows) == 1


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("DELETE FROM sales", "read-only"),
    ],
)
def test_a_bad_or_writing_query_is_one_usage_line_and_changes_nothing(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path, statement: str, problem: str
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    for target in (warehouse, duck):
        target.load_batch(staged(day_file, tmp_path / type(target).__name__), "run-1")
        before = checksums(target)

        with pytest.raises(UsageError, match=r"^query failed: ") as raised:
            target.query(statement, 5)

        assert problem in str(raised.value) and "\n" not in str(raised.value)
        assert checksums(target) == before


def test_check_source_reports_rows_a_postgres_warehouse_already_holds(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> None:
    copy = write_csv(
        tmp_path / "landing" / "copy.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",  # loaded from day1.csv
        "O9,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
    )
    empty = stages.check_source(copy, ValidationRules(), warehouse)
    assert (empty.rows_valid, empty.reason_counts) == (2, {})

    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    checked = stages.check_source(copy, ValidationRules(), warehouse)

    assert (checked.rows_valid, checked.rows_rejected) == (1, 1)
    assert checked.reason_counts == {"duplicate_in_warehouse": 1}
