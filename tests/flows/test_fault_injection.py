"""Faults injected on real components: a warehouse or staging disk that fills up (a small tmpfs),
a read-only warehouse folder, a PostgreSQL backend terminated mid-COPY, a PostgreSQL server that
is not there. Each gives one line naming the cause, the documented exit code, no traceback, a
readable warehouse whose loaded batches balance, and a re-run that ends like a clean run."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.conftest import fresh_process_env, run_salesflow
from tests.prefect_server import fresh_postgres_database, fresh_schema

pytestmark = [pytest.mark.e2e]

TABLES = ("sales", "sales_rejected", "daily_sales")
DAYS = 20
RUN_WIDE_EXIT = 3


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A file system of `size` at `folder`, unmounted afterwards: a disk that really fills."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the fault tests run as root): {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    generate_sales(folder, date(2024, 1, 1), DAYS, 400, seed=3, dirty_ratio=0.0, fmt="csv")
    return folder


@pytest.fixture(scope="module")
def clean_checksums(landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The warehouse a clean run of the landing folder writes, as checksums of its tables."""
    root = tmp_path_factory.mktemp("clean")
    result = run_salesflow(
        root,
        fresh_process_env(root / "prefect-home"),
        "run",
        str(landing),
        "--warehouse",
        str(root / "wh.duckdb"),
    )
    assert result.returncode == 0, result.stderr
    return checksums(DuckDBWarehouse(root / "wh.duckdb"))


def checksums(warehouse: DuckDBWarehouse | PostgresWarehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in TABLES}


def assert_loaded_batches_balance(warehouse: DuckDBWarehouse | PostgresWarehouse) -> int:
    """Every loaded batch holds exactly its rows: rows_in = loaded + rejected, in the tables."""
    rows = warehouse.fetch(
        "SELECT b.batch_id, b.rows_in, b.rows_loaded, b.rows_rejected, "
        "(SELECT count(*) FROM sales s WHERE s.batch_id = b.batch_id), "
        "(SELECT count(*) FROM sales_rejected r WHERE r.batch_id = b.batch_id) "
        "FROM batches b WHERE b.status = 'loaded'"
    )
    for batch_id, rows_in, loaded, rejected, in_sales, in_rejected in rows:
        assert rows_in == loaded + rejected, batch_id
        assert (in_sales, in_rejected) == (loaded, rejected), batch_id
    return len(rows)


def one_line_error(stderr: str) -> str:
    """The error line a run printed; there must be exactly one, and no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_full_warehouse_disk_stops_the_run_and_a_rerun_ends_as_a_clean_run(
    tmp_path: Path, landing: Path, clean_checksums: dict[str, str]
) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        warehouse = disk / "wh.duckdb"

        full = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        line = one_line_error(full.stderr)
        assert full.returncode == RUN_WIDE_EXIT
        assert line.startswith(
            f"error: warehouse disk is full: {warehouse} (no space left on device); nothing of "
        )
        assert line.endswith("batch(es) not attempted")
        assert "cannot rollback" not in full.stderr
        loaded = assert_loaded_batches_balance(DuckDBWarehouse(warehouse))
        assert 0 < loaded < DAYS
        failed = DuckDBWarehouse(warehouse).fetch(
            "SELECT count(*) FROM batches WHERE status = 'failed'"
        )
        assert failed == [(1,)]  # the batch that met the full disk; the rest not attempted

        remount(disk, "size=200m")  # the operator frees space
        rerun = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        assert rerun.returncode == 0, rerun.stderr
        assert checksums(DuckDBWarehouse(warehouse)) == clean_checksums


def test_a_full_staging_disk_stops_the_run_and_a_rerun_ends_as_a_clean_run(
    tmp_path: Path, landing: Path, clean_checksums: dict[str, str]
) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    warehouse = tmp_path / "wh.duckdb"
    with small_tmpfs(tmp_path / "staging", "1m") as staging:
        env["SALESFLOW_STAGING_DIR"] = str(staging)
        (staging / "filler").write_bytes(b"\0" * 900_000)

        full = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        line = one_line_error(full.stderr)
        assert full.returncode == RUN_WIDE_EXIT
        assert line.startswith(f"error: staging disk is full: {staging}")
        assert "(no space left on device)" in line
        assert_loaded_batches_balance(DuckDBWarehouse(warehouse))

        (staging / "filler").unlink()
        rerun = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        assert rerun.returncode == 0, rerun.stderr
        assert checksums(DuckDBWarehouse(warehouse)) == clean_checksums


def test_a_read_only_warehouse_folder_stops_the_run_naming_it(
    tmp_path: Path, landing: Path, clean_checksums: dict[str, str]
) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    first_days = sorted(landing.iterdir())[:2]
    with small_tmpfs(tmp_path / "ro", "50m") as folder:
        warehouse = folder / "wh.duckdb"
        seeded = run_salesflow(
            tmp_path, env, "run", *map(str, first_days), "--warehouse", str(warehouse)
        )
        assert seeded.returncode == 0, seeded.stderr
        before = checksums(DuckDBWarehouse(warehouse))
        remount(folder, "ro")

        refused = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        line = one_line_error(refused.stderr)
        assert refused.returncode == RUN_WIDE_EXIT
        assert line.startswith(f"error: warehouse is not writable: {warehouse}")
        assert "(read-only file system)" in line

        remount(folder, "rw")
        assert checksums(DuckDBWarehouse(warehouse)) == before
        rerun = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))

        assert rerun.returncode == 0, rerun.stderr
        assert checksums(DuckDBWarehouse(warehouse)) == clean_checksums


def test_a_warehouse_file_held_by_another_program_stops_the_run_naming_it(
    tmp_path: Path, landing: Path, clean_checksums: dict[str, str]
) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    env["SALESFLOW_RETRIES"] = "1"
    env["SALESFLOW_RETRY_DELAY_SECONDS"] = "0"
    warehouse = tmp_path / "wh.duckdb"
    holder = subprocess.Popen(  # a DuckDB shell, say, with the file open for writing
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('open', "
            "flush=True); time.sleep(300)",
            str(warehouse),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        held = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))
    finally:
        holder.kill()
        holder.wait()

    line = one_line_error(held.stderr)
    assert held.returncode == RUN_WIDE_EXIT
    assert line.startswith(f"error: warehouse file is held by another program: {warehouse}")
    rerun = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", str(warehouse))
    assert rerun.returncode == 0, rerun.stderr
    assert checksums(DuckDBWarehouse(warehouse)) == clean_checksums


def test_an_unreachable_postgres_warehouse_at_start_is_one_line_and_exit_3(
    tmp_path: Path, landing: Path
) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    env["SALESFLOW_RETRY_DELAY_SECONDS"] = "0"
    url = "postgresql://postgres@127.0.0.1:1/test"

    started = time.monotonic()
    result = run_salesflow(tmp_path, env, "run", str(landing), "--warehouse", url)

    line = one_line_error(result.stderr)
    assert result.returncode == RUN_WIDE_EXIT
    assert line.startswith(f"error: {url}?schema=salesflow: PostgreSQL unreachable (connection")
    assert time.monotonic() - started < 120


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def _copy_in_progress(admin: psycopg.Connection[Any]) -> int | None:
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
        "AND query ILIKE 'COPY%sales_rejected%FROM STDIN%' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else None


@pytest.mark.usefixtures("prefect_harness")
def test_a_backend_terminated_mid_copy_is_retried_and_loads_once(
    database: str, landing: Path, settings: Settings, tmp_path: Path
) -> None:
    days = sorted(landing.iterdir())[:3]
    with fresh_schema(database, "fault") as url, fresh_schema(database, "clean") as clean_url:
        run_etl(days, settings, RunOptions(warehouse=clean_url))
        warehouse = PostgresWarehouse(url)
        warehouse.ensure_schema()
        schema = sql.Identifier(warehouse.schema)
        with psycopg.connect(database, autocommit=True) as admin:
            # Each COPY into sales_rejected lasts a second, long enough to be caught at it.
            admin.execute(
                sql.SQL(
                    "CREATE FUNCTION {}.slow_copy() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
                ).format(schema)
            )
            admin.execute(
                sql.SQL(
                    "CREATE TRIGGER slow_copy BEFORE INSERT ON {}.sales_rejected "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {}.slow_copy()"
                ).format(schema, schema)
            )
        terminated: list[int] = []

        def terminate_the_first_copy() -> None:
            with psycopg.connect(database, autocommit=True) as admin:
                deadline = time.monotonic() + 120
                while not terminated and time.monotonic() < deadline:
                    pid = _copy_in_progress(admin)
                    if pid is not None:
                        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                        terminated.append(pid)
                    time.sleep(0.05)

        killer = threading.Thread(target=terminate_the_first_copy)
        killer.start()
        try:
            summary = run_etl(days, settings, RunOptions(warehouse=url))
        finally:
            terminated.append(0)  # stops the watcher if the run ended first
            killer.join(timeout=150)

        assert terminated[0] != 0, "the load's COPY was never seen in progress"
        assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED] * len(days)
        assert assert_loaded_batches_balance(warehouse) == len(days)
        assert checksums(warehouse) == checksums(PostgresWarehouse(clean_url))
