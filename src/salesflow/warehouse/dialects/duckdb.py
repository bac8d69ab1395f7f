"""The embedded DuckDB warehouse: one file, one writer, every batch load one transaction.

Threads of one process share the database and take turns to write; another process holding the
file is reported as WarehouseBusyError, which the load task retries. DuckDB reads the staged
Parquet files where they lie (views, not copies) and has no statement timeout, so a timer
interrupts a load that runs past its limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

import duckdb
import polars as pl

from salesflow.errors import LoadTimeoutError, UsageError, WarehouseBusyError
from salesflow.warehouse.base import QueryResult, error_line
from salesflow.warehouse.dialects import StagedColumn
from salesflow.warehouse.sql_warehouse import SqlWarehouse
from salesflow.warehouse.tables import render_ddl

# The logical column types of salesflow.warehouse.tables, in DuckDB's words.
COLUMN_TYPES = {
    "text": "VARCHAR",
    "text[]": "VARCHAR[]",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "date": "DATE",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "money": "DECIMAL(18, 4)",
    "amount": "DECIMAL(38, 4)",
}
SCHEMA = render_ddl(COLUMN_TYPES)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


LOCK_WAIT_SECONDS = 600.0

QUERY_ONLY_READS = "the query may only read the warehouse"
# How DuckDB says a confined query tried to write or to lift the limits.
_REFUSED_SIGNS = ("configuration has been locked", "read-only mode")


def _open_lock_file(lock_path: Path, required: bool) -> IO[str] | None:
    """The lock file, created if need be; for a reader that may not create it (a read-only
    file or directory) an existing one opened read-only (flock needs no write access), else
    None: no writer can write there either, so there is no one to take turns with."""
    try:
        return lock_path.open("a")
    except OSError:
        if required:
            raise
    try:
        return lock_path.open("r")
    except OSError:
        return None


@contextmanager
def _file_lock(lock_path: Path, wait_seconds: float, required: bool = True) -> Iterator[None]:
    """Serialise every salesflow process's use of one DuckDB file.

    DuckDB lets only one process open a file at a time; without this, overlapping runs would
    fail each other with lock errors instead of taking turns. The lock dies with its process.
    A reader (`required=False`) that cannot open the lock file goes on without it.
    """
    deadline = time.monotonic() + wait_seconds
    opened = _open_lock_file(lock_path, required)
    if opened is None:
        yield
        return
    with opened as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseBusyError(
                        f"{lock_path}: another salesflow process kept the warehouse for "
                        f"{wait_seconds:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float | None) -> Iterator[None]:
    """A statement timeout DuckDB lacks: interrupt the connection when time is up, and again
    every INTERRUPT_REPEAT_SECONDS until the block ends, since an interrupt that arrives
    between two statements is lost and the load would run on past its limit.

    Prefect cannot stop a synchronous task running in a worker thread; the database can.
    """
    if seconds is None:
        yield
        return
    done = threading.Event()

    def interrupt_until_done() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            con.interrupt()
            done.wait(INTERRUPT_REPEAT_SECONDS)

    timer = threading.Thread(target=interrupt_until_done, daemon=True)
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()


INTERRUPT_REPEAT_SECONDS = 0.05


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, never hiding why: after a fatal error (a full disk) DuckDB has already
    ended the transaction, and its "cannot rollback - no transaction is active" would replace
    the real cause in the message the operator sees."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


class DuckDBDialect:
    """A DuckDB file: its locks, connections and Parquet views."""

    null_safe_columns: Sequence[str] | None = None  # every column IS NOT DISTINCT FROM
    binary_collation = ""  # DuckDB sorts text by bytes
    temp_table_options = ""  # temporary tables end with the connection, one per transaction

    # One write lock per database file for all threads of this process.
    _write_locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, location: str | Path) -> None:
        self.path = Path(location).expanduser().resolve()
        self.location = str(self.path)
        with self._locks_guard:
            self._write_lock = self._write_locks.setdefault(self.location, threading.Lock())
        self._schema_ready = False

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"{self.location}: cannot create its folder ({error.strerror or error})"
            ) from None
        with self._turn(), self._open(read_only=False) as connection:
            yield connection

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for another process (the CLI's query and rejects): it waits
        for a running load to commit instead of failing on DuckDB's file lock."""
        if not self.path.exists():
            raise UsageError(
                f"{self.location}: no warehouse yet; run `salesflow run` or `salesflow demo` first"
            )
        with self._turn(required=False), self._open(read_only=True) as connection:
            yield connection

    def _turn(self, required: bool = True) -> contextlib.AbstractContextManager[None]:
        """The cross-process lock; a reader does without it where it cannot open the lock file
        (a read-only warehouse file or directory, where no writer can write either)."""
        return _file_lock(
            self.path.with_name(self.path.name + ".lock"), LOCK_WAIT_SECONDS, required
        )

    @contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            connection = duckdb.connect(self.location, read_only=read_only)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise WarehouseBusyError(
                    f"{self.location}: warehouse is in use by another process"
                ) from error
            raise UsageError(
                f"{self.location}: cannot open as a DuckDB warehouse ({error})"
            ) from None
        except duckdb.Error as error:
            raise UsageError(
                f"{self.location}: cannot open as a DuckDB warehouse ({error})"
            ) from None
        try:
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The process's one writer: holds the write lock and makes sure the tables exist."""
        with self._write_lock, self._connect() as connection:
            if not self._schema_ready:
                connection.execute(SCHEMA)
                self._schema_ready = True
            yield connection

    def render(self, sql: str) -> str:
        """DuckDB takes the shared SQL's `?` as it is."""
        return sql

    def execute_many(self, con: Any, sql: str, rows: list[list[Any]]) -> None:
        con.executemany(sql, rows)

    def ensure_schema(self) -> None:
        with self._writer():
            pass

    @contextmanager
    def write_transaction(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """The writer's connection inside one transaction: committed when the block ends,
        rolled back if anything in it fails (an interrupt included)."""
        with self._writer() as con, _interrupt_after(con, timeout_seconds):
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except duckdb.InterruptException:
                _rollback(con)
                if source is None:
                    raise
                raise LoadTimeoutError(
                    source,
                    f"load took longer than {timeout_seconds} s and was rolled back; "
                    "raise load_timeout_seconds or split the file",
                ) from None
            except BaseException:
                _rollback(con)
                raise

    @contextmanager
    def scratch(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            finally:
                _rollback(con)

    def stage_parquet(
        self, con: Any, name: str, path: Path, columns: Sequence[StagedColumn]
    ) -> None:
        """A view, not a copy: the statements that read it read the Parquet file directly
        (copying it first cost a fifth of the load)."""
        select = ", ".join(
            f"{_identifier(column.source)} AS {_identifier(column.name)}" for column in columns
        )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} "
            f"FROM read_parquet({_sql_string(str(path))})"
        )

    def insert_frame(self, con: Any, table: str, frame: pl.DataFrame) -> None:
        con.register("inserted_frame", frame.to_arrow())
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM inserted_frame")
        finally:
            con.unregister("inserted_frame")

    def save_rows(self, con: Any, table: str, batch_id: str, folder: Path) -> None:
        target = _sql_string(str(folder / f"{table}.parquet"))
        con.execute(
            f"COPY (SELECT * FROM {table} WHERE batch_id = {_sql_string(batch_id)}) "
            f"TO {target} (FORMAT parquet)"
        )

    def restore_rows(self, con: Any, table: str, folder: Path) -> None:
        saved = _sql_string(str(folder / f"{table}.parquet"))
        con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({saved})")

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one of salesflow's read queries: on a read-only connection once the file
        exists, so `rejects`, `report` and `status` read a warehouse they cannot write."""
        opened = self.reader() if self.path.exists() else self._connect()
        with opened as con:
            return con.execute(sql, params or []).fetchall()

    def holds_data(self) -> bool:
        """The file exists and has the `batches` table; a missing file is not created."""
        if not self.path.exists():
            return False
        with self.reader() as con:
            row = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name = 'batches'"
            ).fetchone()
        return bool(row and row[0])

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's query, which may only read the warehouse: one statement, on a read-only
        connection (see `reader`) that, once the file is open, may touch no other file, no
        extension and no network (`enable_external_access = false`) and change no setting
        (`lock_configuration = true`; SET, RESET and PRAGMA cannot lift the limits). DuckDB
        spills to a private temporary folder, removed afterwards, not next to the warehouse."""
        # The folder outlives the connection, which may hold files in it until it closes.
        with tempfile.TemporaryDirectory(prefix="salesflow-query-") as spill, self.reader() as con:
            try:
                count = len(con.extract_statements(sql))
                if count == 0:
                    raise UsageError("empty query: give a SQL statement")
                if count > 1:
                    raise UsageError(
                        f"query failed: {QUERY_ONLY_READS}; give one statement, not {count}"
                    )
                for setting in (
                    f"temp_directory = {_sql_string(spill)}",
                    "python_enable_replacements = false",  # no scans of Python variables
                    "enable_external_access = false",
                    "lock_configuration = true",
                ):
                    con.execute(f"SET {setting}")
                cursor = con.execute(sql)
                columns = [column[0] for column in cursor.description or []]
                rows = cursor.fetchmany(limit) if cursor.description else []
            except duckdb.Error as error:
                if isinstance(error, duckdb.PermissionException) or any(
                    sign in str(error) for sign in _REFUSED_SIGNS
                ):
                    raise UsageError(
                        f"query failed: {QUERY_ONLY_READS} ({error_line(error)})"
                    ) from None
                raise UsageError(f"query failed: {error_line(error)}") from None
        return QueryResult(columns, rows)


class DuckDBWarehouse(SqlWarehouse):
    """A DuckDB file holding the warehouse's tables."""

    dialect: DuckDBDialect

    def __init__(self, location: str | Path) -> None:
        super().__init__(DuckDBDialect(location))
        self.path = self.dialect.path

    def reader(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection that waits for a running load to commit (see the dialect)."""
        return self.dialect.reader()
