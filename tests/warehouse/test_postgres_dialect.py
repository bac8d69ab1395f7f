"""What only the PostgreSQL warehouse has, on the local server: a URL (never holding the
password in the location), a server that may be unreachable or lack the database, writers
taking turns on the advisory lock, another session holding locks, a lost connection being
transient."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from salesflow.errors import (
    LoadTimeoutError,
    TransientError,
    UsageError,
    WarehouseUnavailableError,
)
from salesflow.manifest import BatchManifest, BatchStatus
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse, open_warehouse
from salesflow.warehouse.base import LoadPolicy
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import with_schema
from tests.warehouse.batches import checksums, staged

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


@pytest.fixture
def warehouse(postgres_warehouse: PostgresWarehouse) -> PostgresWarehouse:
    """Only PostgreSQL here: the shared `warehouse` fixture's postgres case."""
    return postgres_warehouse


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


def missing_database(database: str) -> str:
    return database.rsplit("/", 1)[0] + "/no_such_database_here"


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
    # `_connect` is private: it moved from the warehouse to its dialect in the src refactor.
    with reopened.dialect._connect() as con:
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


# --- the server ---------------------------------------------------------------------------


def test_a_missing_database_is_a_usage_error_and_a_refused_connection_transient(
    database: str,
) -> None:
    with pytest.raises(UsageError, match='database "no_such_database_here" does not exist'):
        PostgresWarehouse(missing_database(database)).ensure_schema()

    with pytest.raises(WarehouseUnavailableError, match="PostgreSQL unreachable") as raised:
        PostgresWarehouse(UNREACHABLE).fetch("SELECT 1")
    assert isinstance(raised.value, TransientError)


def test_another_schema_holds_no_data_and_an_unreachable_server_raises(
    warehouse: PostgresWarehouse, database: str
) -> None:
    warehouse.ensure_schema()
    assert warehouse.holds_data()
    # Another schema of the same database is still empty.
    other = PostgresWarehouse(with_schema(database, f"t_{uuid.uuid4().hex[:12]}"))
    assert not other.holds_data()
    with pytest.raises(WarehouseUnavailableError, match="PostgreSQL unreachable"):
        PostgresWarehouse(UNREACHABLE).holds_data()
    with pytest.raises(UsageError, match="does not exist"):
        PostgresWarehouse(missing_database(database)).holds_data()


# --- another session: a held table, the advisory lock, a terminated backend ----------------


def loaded_then_changed(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path
) -> tuple[dict[str, str], BatchManifest]:
    """Load the day file, then rewrite it to one row: the checksums of the first load, and
    the staged second version whose load a test then disturbs."""
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")
    return before, staged(day_file, tmp_path / "second")


def test_a_load_past_its_time_limit_is_cancelled_and_rolled_back(
    warehouse: PostgresWarehouse, day_file: Path, tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    before, manifest = loaded_then_changed(warehouse, day_file, tmp_path)
    table = sql.Identifier(warehouse.schema, "sales")

    with admin.transaction():  # another session holds `sales`: the load cannot finish in time
        admin.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        started = time.monotonic()
        with pytest.raises(LoadTimeoutError, match=r"longer than 0\.3 s and was rolled back"):
            warehouse.load_batch(manifest, "run-2", LoadPolicy(timeout_seconds=0.3))
        assert time.monotonic() - started < 5

    assert checksums(warehouse) == before


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
    before, manifest = loaded_then_changed(warehouse, day_file, tmp_path)
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
