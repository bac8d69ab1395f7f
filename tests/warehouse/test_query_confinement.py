"""`salesflow query` may only read the warehouse (issue #13, point 2).

DuckDB runs the user's statement with external access disabled and the configuration locked;
PostgreSQL runs it alone (extended protocol) in a READ ONLY transaction with a time limit. Each
escape below is refused with one line and leaves no trace; read-only commands work on a warehouse
that cannot be written at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import psycopg
import pytest

from salesflow.errors import UsageError
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from salesflow.warehouse.dialects.postgres import PostgresDialect
from tests.conftest import fresh_process_env, run_salesflow
from tests.prefect_server import fresh_postgres_database, fresh_schema

REFUSED = "query failed: the query may only read the warehouse"
REJECTED_ROW = ("sales_2024-03-01.csv", 2, ["zero_quantity"], '{"quantity": "0"}')
INSERT_REJECTED = (
    "INSERT INTO sales_rejected (batch_id, source_row, reasons, raw) "
    "VALUES ('x.csv', 9, ['zero_quantity'], '{}')"
)


def duckdb_warehouse(path: Path) -> DuckDBWarehouse:
    """A DuckDB warehouse with its tables and one rejected row."""
    warehouse = DuckDBWarehouse(path)
    warehouse.ensure_schema()
    with duckdb.connect(str(path)) as con:
        con.execute(
            "INSERT INTO sales_rejected (batch_id, source_row, reasons, raw) VALUES (?, ?, ?, ?)",
            list(REJECTED_ROW),
        )
    return warehouse


def listing(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size: what a refused statement must leave alone."""
    return {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_refused(warehouse: DuckDBWarehouse | PostgresWarehouse, statement: str) -> str:
    with pytest.raises(UsageError) as raised:
        warehouse.query(statement, 10)
    message = str(raised.value)
    assert message.startswith(REFUSED), message
    assert "\n" not in message
    return message


def assert_select_works(warehouse: DuckDBWarehouse | PostgresWarehouse) -> None:
    result = warehouse.query("SELECT batch_id, source_row, reasons FROM sales_rejected", 10)
    assert result.columns == ["batch_id", "source_row", "reasons"]
    assert result.rows == [REJECTED_ROW[:3]]


# --- DuckDB ---------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The warehouse's folder, with another warehouse and files a query must not reach."""
    with duckdb.connect(str(tmp_path / "other.duckdb")) as con:
        con.execute("CREATE TABLE secret AS SELECT 42 AS answer")
    (tmp_path / "secret.csv").write_text("answer\n42\n", encoding="utf-8")
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 42 AS answer) TO '{tmp_path / 'secret.parquet'}'")
    return tmp_path


@pytest.fixture
def local(folder: Path) -> DuckDBWarehouse:
    return duckdb_warehouse(folder / "wh.duckdb")


DUCKDB_ESCAPES = [
    "COPY (SELECT 1) TO '{folder}/out.csv'",
    "COPY sales_rejected TO '{folder}/out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{folder}/out'",
    "ATTACH '{folder}/other.duckdb' AS other",
    "ATTACH '{folder}/out.duckdb' AS out",
    "SELECT * FROM read_csv('{folder}/secret.csv')",
    "SELECT * FROM '{folder}/secret.csv'",
    "SELECT * FROM read_text('{folder}/secret.csv')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_parquet('{folder}/secret.parquet')",
    "SELECT * FROM glob('{folder}/*')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('https://example.com/sales.csv')",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "PRAGMA enable_external_access = true",
    "SET allowed_paths = ['/']",
    "SET temp_directory = '{folder}/spill'",
    "PRAGMA enable_profiling",
    "SET profiling_output = '{folder}/profile.json'",
    "CREATE TABLE out AS SELECT 1 AS a",
    INSERT_REJECTED,
    "SELECT 1; COPY (SELECT 1) TO '{folder}/out.csv'",
    "SELECT 1; SELECT 2",
    "SET enable_external_access = true; SELECT 1",
]


@pytest.mark.parametrize("statement", DUCKDB_ESCAPES)
def test_a_duckdb_query_cannot_touch_another_file_the_network_or_its_limits(
    local: DuckDBWarehouse, folder: Path, statement: str
) -> None:
    before = listing(folder)

    message = assert_refused(local, statement.replace("{folder}", str(folder)))

    assert listing(folder) == before
    assert not any((folder / name).exists() for name in ("out", "out.csv", "spill"))
    assert "42" not in message  # nothing of the secret files came back in the message
    assert_select_works(local)


def test_each_duckdb_refusal_says_why_in_one_line(local: DuckDBWarehouse, folder: Path) -> None:
    assert assert_refused(local, f"COPY (SELECT 1) TO '{folder}/out.csv'") == (
        f'{REFUSED} (Permission Error: Cannot access file "{folder}/out.csv" - file system '
        "operations are disabled by configuration)"
    )
    assert assert_refused(local, "SELECT 1; SELECT 2") == f"{REFUSED}; give one statement, not 2"


def test_a_duckdb_query_still_reads_sorts_and_uses_temporary_tables(
    local: DuckDBWarehouse, folder: Path
) -> None:
    before = listing(folder)

    result = local.query(
        "SELECT r.batch_id, count(*) AS n FROM sales_rejected AS r "
        "JOIN (SELECT range AS i FROM range(3)) ON true GROUP BY ALL ORDER BY 1",
        10,
    )

    assert result.columns == ["batch_id", "n"] and result.rows == [(REJECTED_ROW[0], 3)]
    assert local.query("SELECT '%s ?' AS text", 10).rows == [("%s ?",)]
    assert listing(folder) == before


def test_the_limits_end_with_the_query(local: DuckDBWarehouse, folder: Path) -> None:
    """The settings belong to the query's connection: the next writer is not confined."""
    assert_refused(local, f"COPY (SELECT 1) TO '{folder}/out.csv'")

    rows = local.fetch(f"SELECT * FROM read_csv('{folder}/secret.csv')")

    assert rows == [(42,)]


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def shared(database: str) -> Iterator[PostgresWarehouse]:
    """A PostgreSQL warehouse in its own schema with one rejected row."""
    with fresh_schema(database) as url:
        warehouse = PostgresWarehouse(url)
        warehouse.ensure_schema()
        with psycopg.connect(database) as con:
            con.execute(
                f"INSERT INTO {warehouse.schema}.sales_rejected "
                "(batch_id, source_row, reasons, raw) VALUES (%s, %s, %s, %s)",
                list(REJECTED_ROW),
            )
        yield warehouse


def table_names(warehouse: PostgresWarehouse) -> list[str]:
    return [
        row[0]
        for row in warehouse.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
            [warehouse.schema],
        )
    ]


@pytest.mark.parametrize(
    "statement",
    [
        INSERT_REJECTED.replace("['zero_quantity']", "ARRAY['zero_quantity']"),
        "DELETE FROM sales_rejected",
        "UPDATE sales_rejected SET source_row = 3",
        "CREATE TABLE out (a int)",
        "COMMIT; INSERT INTO sales_rejected (batch_id, source_row, reasons, raw) "
        "VALUES ('x.csv', 9, ARRAY['zero_quantity'], '{}')",
        "COMMIT; CREATE TABLE out (a int)",
        "SELECT 1; SELECT 2",
    ],
)
def test_a_postgres_query_runs_alone_in_a_read_only_transaction(
    shared: PostgresWarehouse, statement: str
) -> None:
    tables = table_names(shared)

    assert_refused(shared, statement)

    assert table_names(shared) == tables and "out" not in tables
    assert_select_works(shared)


def test_a_postgres_query_past_its_time_limit_is_stopped(
    shared: PostgresWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresDialect, "QUERY_TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()

    with pytest.raises(UsageError) as raised:
        shared.query("SELECT set_config('statement_timeout', '0', false), pg_sleep(10)", 10)

    assert str(raised.value) == "query failed: stopped after 0.5 s, the query time limit"
    assert time.monotonic() - started < 5
    assert_select_works(shared)


def test_a_postgres_query_keeps_percent_and_question_marks_as_written(
    shared: PostgresWarehouse,
) -> None:
    assert shared.query("SELECT '%s ? %%' AS text", 10).rows == [("%s ? %%",)]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_multi_statement_string_is_refused_whole_on_both_warehouses(
    backend: str, request: pytest.FixtureRequest
) -> None:
    warehouse: DuckDBWarehouse | PostgresWarehouse = request.getfixturevalue(
        "local" if backend == "duckdb" else "shared"
    )

    message = assert_refused(warehouse, "SELECT 1; SELECT 2")

    assert "give one statement" in message
    assert_select_works(warehouse)


# --- read-only warehouses through the CLI ---------------------------------------------------


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """`source` (a file or a folder) seen at `target` through a read-only bind mount, which
    stops root's writes too (chmod does not); always unmounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("read-only bind mounts need root and mount(8)")
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A warehouse in a folder no one can write, without a lock file."""
    source = tmp_path / "source"
    source.mkdir()
    duckdb_warehouse(source / "wh.duckdb")
    (source / "wh.duckdb.lock").unlink()
    target = tmp_path / "ro"
    target.mkdir()
    with read_only_view(source, target):
        yield target / "wh.duckdb"


@contextmanager
def read_only_files(tmp_path: Path) -> Iterator[Path]:
    """A warehouse file and its lock file that no one can write, in a writable folder."""
    source = tmp_path / "source"
    source.mkdir()
    duckdb_warehouse(source / "wh.duckdb")
    shown = tmp_path / "shown"
    shown.mkdir()
    for name in ("wh.duckdb", "wh.duckdb.lock"):
        (shown / name).touch()
    with (
        read_only_view(source / "wh.duckdb", shown / "wh.duckdb"),
        read_only_view(source / "wh.duckdb.lock", shown / "wh.duckdb.lock"),
    ):
        yield shown / "wh.duckdb"


READ_ONLY_PLACES = {"read-only folder": read_only_folder, "read-only files": read_only_files}


@pytest.mark.parametrize("place", READ_ONLY_PLACES)
def test_query_reads_a_warehouse_that_cannot_be_written(tmp_path: Path, place: str) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    with READ_ONLY_PLACES[place](tmp_path) as warehouse:
        before = listing(warehouse.parent)

        result = run_salesflow(
            tmp_path,
            env,
            "query",
            "--warehouse",
            str(warehouse),
            "SELECT batch_id, source_row FROM sales_rejected",
        )
        refused = run_salesflow(
            tmp_path, env, "query", "--warehouse", str(warehouse), "COPY sales TO 'x.csv'"
        )

        assert listing(warehouse.parent) == before
    assert result.returncode == 0, result.stderr
    assert "sales_2024-03-01.csv" in result.stdout and "│ 2 " in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f'error: {REFUSED} (Permission Error: Cannot access file "x.csv" - file system '
        "operations are disabled by configuration)"
    ]
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("place", READ_ONLY_PLACES)
def test_rejects_reads_a_warehouse_that_cannot_be_written(tmp_path: Path, place: str) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    with READ_ONLY_PLACES[place](tmp_path) as warehouse:
        result = run_salesflow(tmp_path, env, "rejects", "--warehouse", str(warehouse))

    assert result.returncode == 0, result.stderr
    assert "sales_rejected (1 rows)" in result.stdout
    assert "zero_quantity" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
