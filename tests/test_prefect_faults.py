"""Prefect-side faults on real components: each gives one line naming its cause and the fix, exit
code 3, no traceback, quickly; the warehouse stays readable and a re-run completes it.

A `salesflow` process each, with its own PREFECT_HOME; real `prefect server` processes on
127.0.0.1 where a server is needed, a real tmpfs for a full disk.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest

from salesflow.flows import health
from salesflow.flows.health import PrefectTarget, known_revisions
from salesflow.server import PrefectServer, free_port
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, fresh_process_env, run_salesflow, write_csv

RUN_WIDE = 3
TABLES = ("sales", "sales_rejected", "daily_sales")
FOREIGN_REVISION = "f00dfeedbeef"


def landing_files(folder: Path, days: int, rows: int = 20) -> Path:
    """`days` small daily files, each with one rejected row (zero quantity, under the 5 % reject
    limit)."""
    first = date(2024, 5, 1)
    for offset in range(days):
        day = first + timedelta(days=offset)
        lines = [f"O{day:%m%d}-{n},{day},C{n},S{n},P,C,{n + 1},10.50,North" for n in range(rows)]
        lines.append(f"Z{day:%m%d},{day},C0,S0,P,C,0,10.50,North")
        write_csv(folder / f"sales_{day}.csv", CANONICAL_HEADER, *lines)
    return folder


def user_env(home: Path, root: Path, **extra: str) -> dict[str, str]:
    return fresh_process_env(home) | {
        "SALESFLOW_DATA_DIR": str(root / "data"),
        "SALESFLOW_RETRY_DELAY_SECONDS": "0",
        "COLUMNS": "200",
        **extra,
    }


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def checksums(warehouse: Path) -> dict[str, str]:
    opened = DuckDBWarehouse(warehouse)
    return {table: opened.table_checksum(table) for table in TABLES}


def batch_balance(warehouse: Path) -> list[tuple[str, str, bool]]:
    """(batch, status, balances) of every batch: a loaded one must balance."""
    with DuckDBWarehouse(warehouse).reader() as con:
        rows = con.execute(
            "SELECT batch_id, status, rows_in = rows_loaded + rows_rejected FROM batches "
            "ORDER BY batch_id"
        ).fetchall()
    return [(str(batch), str(status), bool(balanced)) for batch, status, balanced in rows]


# -- an API where nothing listens ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["run", "landing"],
        ["status"],
        ["deploy"],
        ["backfill", "--start", "2024-05-01", "--end", "2024-05-02", "--landing", "landing"],
    ],
    ids=["run", "status", "deploy", "backfill"],
)
def test_an_unreachable_api_is_named_at_once_with_exit_code_3(
    tmp_path: Path, command: list[str]
) -> None:
    landing_files(tmp_path / "landing", days=2)
    url = f"http://127.0.0.1:{free_port()}/api"
    env = user_env(tmp_path / "prefect-home", tmp_path, PREFECT_API_URL=url)

    started = time.monotonic()
    result = run_salesflow(tmp_path, env, *command, timeout=120)
    took = time.monotonic() - started

    assert result.returncode == RUN_WIDE, result.stderr
    assert one_error_line(result.stderr) == (
        f"error: Prefect API unreachable at {url} (connection refused); start the server "
        "(`salesflow server up`) or fix PREFECT_API_URL (unset it to use Prefect's ephemeral API)"
    )
    assert took < 30, took  # Python and Prefect's import; no retries
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()


# -- Prefect's database migrated by a newer Prefect -----------------------------------------------


def test_the_revision_used_below_is_unknown_to_the_installed_prefect() -> None:
    revisions = known_revisions()
    assert len(revisions) > 100  # the migrations were found at all
    assert FOREIGN_REVISION not in revisions


@pytest.mark.parametrize("command", [["run", "landing"], ["status"]], ids=["run", "status"])
def test_a_prefect_database_of_a_newer_prefect_is_named_within_seconds(
    tmp_path: Path, command: list[str]
) -> None:
    from importlib.metadata import version

    landing_files(tmp_path / "landing", days=1)
    home = tmp_path / "prefect-home"
    home.mkdir()
    database = home / "prefect.db"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        con.execute("INSERT INTO alembic_version VALUES (?)", [FOREIGN_REVISION])
    con.close()

    started = time.monotonic()
    result = run_salesflow(tmp_path, user_env(home, tmp_path), *command, timeout=120)
    took = time.monotonic() - started

    assert result.returncode == RUN_WIDE, result.stderr
    assert one_error_line(result.stderr) == (
        f"error: Prefect's database {database} was migrated by another Prefect version (alembic "
        f"revision {FOREIGN_REVISION}, unknown to the installed prefect {version('prefect')}); "
        "use a separate PREFECT_HOME for this salesflow, or the newer Prefect (`prefect server "
        "database upgrade` with it)"
    )
    assert took < 20, took  # not the ephemeral API's 3-minute start-up timeout
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as con:  # left as it was
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (FOREIGN_REVISION,)
        ]
    con.close()


# -- Prefect's home on a full disk ---------------------------------------------------------------


@contextmanager
def full_tmpfs(folder: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` and filled up; always unmounted after."""
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        with (folder / "filler").open("wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_prefect_home_is_named_with_its_path_and_exit_code_3(tmp_path: Path) -> None:
    landing = landing_files(tmp_path / "landing", days=3)
    with full_tmpfs(tmp_path / "prefect-home") as home:
        started = time.monotonic()
        result = run_salesflow(tmp_path, user_env(home, tmp_path), "run", "landing", timeout=120)
        took = time.monotonic() - started

    assert result.returncode == RUN_WIDE, result.stderr
    assert one_error_line(result.stderr) == (
        f"error: Prefect home disk is full: {home} (no space left on device, 0 KiB free); free "
        "space there, or set PREFECT_HOME to a folder on another disk"
    )
    assert took < 20, took
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()

    again = run_salesflow(
        tmp_path, user_env(tmp_path / "roomy-home", tmp_path), "run", str(landing), timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert [status for _, status, _ in batch_balance(tmp_path / "data" / "warehouse.duckdb")] == [
        "loaded"
    ] * 3


# -- the Prefect server killed in the middle of a run ---------------------------------------------


def loaded_batches(warehouse: Path) -> int:
    if not warehouse.exists():
        return 0
    try:
        with DuckDBWarehouse(warehouse).reader() as con:
            row = con.execute("SELECT count(*) FROM batches WHERE status = 'loaded'").fetchone()
    except Exception:  # the tables are still being created
        return 0
    return int(row[0]) if row else 0


@pytest.mark.e2e
def test_a_server_killed_mid_run_ends_the_run_in_one_line_and_a_rerun_completes_it(
    tmp_path: Path,
) -> None:
    files = 20
    landing = landing_files(tmp_path / "landing", days=files)
    server_home = tmp_path / "server-home"
    client_home = tmp_path / "client-home"
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    out, err = tmp_path / "run.out", tmp_path / "run.err"

    with PrefectServer(server_home) as server:
        env = user_env(client_home, tmp_path) | server.env
        env["SALESFLOW_MAX_WORKERS"] = "1"  # batches one after another: many left to kill
        with out.open("w") as stdout, err.open("w") as stderr:
            run = subprocess.Popen(
                [sys.executable, "-m", "salesflow.cli", "run", str(landing)],
                cwd=tmp_path,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        try:
            deadline = time.monotonic() + 180
            while loaded_batches(warehouse) < 2:
                assert run.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "no batch loaded within 180 s"
                time.sleep(0.2)
            assert server._process is not None
            os.killpg(server._process.pid, signal.SIGKILL)  # the server dies, no goodbye
            killed = time.monotonic()
            code = run.wait(timeout=90)
            took = time.monotonic() - killed
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()

    assert code == RUN_WIDE, err.read_text()
    line = one_error_line(err.read_text())
    assert re.fullmatch(
        re.escape(
            f"error: Prefect API at {server.api_url} stopped answering during the run "
            "(connection refused); the run was stopped: batches committed before stay loaded, "
            "the others were not; start the server again and re-run the same command"
        ),
        line,
    ), line
    assert took < 30, took  # 5 s of silence, 10 s for the run to stop, not minutes of retries
    after_kill = batch_balance(warehouse)  # readable, and every loaded batch balances
    loaded = [batch for batch, status, balanced in after_kill if status == "loaded" and balanced]
    assert [entry for entry in after_kill if entry[1] == "loaded"] == [
        (batch, "loaded", True) for batch in loaded
    ]
    assert 2 <= len(loaded) < files

    # The server back up (same database), the same command completes the warehouse ...
    with PrefectServer(server_home) as again:
        env = user_env(client_home, tmp_path) | again.env
        rerun = run_salesflow(tmp_path, env, "run", str(landing), timeout=300)
        clean_root = tmp_path / "clean"
        clean_env = user_env(clean_root / "home", clean_root) | again.env
        clean = run_salesflow(tmp_path, clean_env, "run", str(landing), timeout=300)

    assert rerun.returncode == 0, rerun.stderr
    assert clean.returncode == 0, clean.stderr
    assert f"{files - len(loaded)} loaded, {len(loaded)} unchanged, 0 failed" in rerun.stdout
    days = [f"sales_{date(2024, 5, 1) + timedelta(days=n)}.csv" for n in range(files)]
    assert batch_balance(warehouse) == [
        (batch, "skipped" if batch in loaded else "loaded", True) for batch in days
    ]
    # ... identical to a clean run of the same files.
    assert checksums(warehouse) == checksums(clean_root / "data" / "warehouse.duckdb")


# -- the pieces, without a process ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////srv/home/prefect.db", Path("/srv/home/prefect.db")),
        ("sqlite+aiosqlite:///%2Fsrv%2Fp%20h/prefect.db", Path("/srv/p h/prefect.db")),
        ("sqlite+aiosqlite:///file::memory:?cache=shared&uri=true", None),
        ("postgresql+asyncpg://prefect@db/prefect", None),
    ],
)
def test_the_sqlite_file_is_found_in_prefects_database_url(url: str, path: Path | None) -> None:
    from salesflow.flows.health import sqlite_path

    assert sqlite_path(url) == path


def test_a_database_of_this_prefect_or_none_yet_passes_the_check(tmp_path: Path) -> None:
    from salesflow.errors import PrefectApiError
    from salesflow.flows.health import check_local_database

    database = tmp_path / "prefect.db"
    url = f"sqlite+aiosqlite:///{database}"
    check_local_database(url)  # no file yet: Prefect creates it
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        con.execute("INSERT INTO alembic_version VALUES (?)", [sorted(known_revisions())[0]])
    con.close()
    check_local_database(url)
    with sqlite3.connect(database) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", [FOREIGN_REVISION])
    con.close()
    with pytest.raises(PrefectApiError, match=f"alembic revision {FOREIGN_REVISION}, unknown"):
        check_local_database(url)


def test_a_disk_full_error_out_of_prefect_names_prefects_home_or_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from salesflow.errors import DiskFullError
    from salesflow.flows.health import prefect_fault

    home = tmp_path / "prefect-home"
    # Prefect's settings were read when this session imported Prefect; the home is what counts.
    monkeypatch.setattr(health, "prefect_target", lambda: PrefectTarget(None, home, ""))
    in_home = OSError(errno.ENOSPC, "No space left on device", str(home / "storage" / "x"))
    elsewhere = OSError(errno.ENOSPC, "No space left on device", "/srv/results/x")
    sqlite = RuntimeError("(sqlite3.OperationalError) database or disk is full")

    faults = [prefect_fault(error) for error in (in_home, elsewhere, sqlite)]

    assert [type(fault) for fault in faults] == [DiskFullError] * 3
    assert [str(fault) for fault in faults] == [
        f"Prefect home disk is full: {home} (no space left on device); free space there, or set "
        "PREFECT_HOME to a folder on another disk",
        "disk is full: /srv/results/x (no space left on device)",
        f"Prefect home disk is full: {home} (no space left on device); free space there, or set "
        "PREFECT_HOME to a folder on another disk",
    ]
    assert prefect_fault(ValueError("a bug")) is None
    assert prefect_fault(DiskFullError("warehouse disk is full: /srv/wh.duckdb")) is None
