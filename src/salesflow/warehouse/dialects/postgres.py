"""The PostgreSQL warehouse: the same tables and the same one-transaction batch load as DuckDB,
for a warehouse that several machines and analysts share.

Bulk rows go in with COPY into temporary tables, then INSERT ... SELECT, all inside the load's
transaction. Writers take turns on an advisory lock derived from the schema, the analogue of
the DuckDB file lock; readers never wait (MVCC shows them the last commit).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from math import ceil
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import psycopg
from psycopg import sql

from salesflow.errors import (
    LoadTimeoutError,
    UsageError,
    WarehouseBusyError,
    WarehouseUnavailableError,
)
from salesflow.pg_url import PostgresUrl, connect_failure, first_line
from salesflow.warehouse.base import QueryResult, error_line
from salesflow.warehouse.dialects import StagedColumn
from salesflow.warehouse.sql_warehouse import SqlWarehouse
from salesflow.warehouse.tables import SALES, render_ddl

DEFAULT_SCHEMA = "salesflow"
LOCK_WAIT_SECONDS = 600.0
COPY_ROWS_PER_CHUNK = 50_000

# The logical column types of salesflow.warehouse.tables, in PostgreSQL's words.
COLUMN_TYPES = {
    "text": "text",
    "text[]": "text[]",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "date": "date",
    "integer": "integer",
    "bigint": "bigint",
    "double": "double precision",
    "money": "numeric(18, 4)",
    "amount": "numeric(38, 4)",
}

# `{s}` is the warehouse schema, filled in with sql.Identifier.
# The function is DuckDB's list_contains, so queries written for DuckDB run here too.
SCHEMA_DDL = render_ddl(COLUMN_TYPES, prefix="{s}.", server=True) + (
    "CREATE OR REPLACE FUNCTION {s}.list_contains(anyarray, anyelement) RETURNS boolean\n"
    "    LANGUAGE sql IMMUTABLE AS 'SELECT $2 = ANY($1)';\n"
)

# Quoted strings, quoted identifiers and comments, where a `?` is not a placeholder.
_QUOTED_OR_PLACEHOLDER = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|%", re.S
)


def _psycopg_placeholders(query: str) -> str:
    """DuckDB-style `?` placeholders as psycopg's `%s` (a `?` in quoted text or a comment is
    text, and every `%` is escaped), so the queries the flow writes against the Warehouse
    interface run on both warehouses."""

    def convert(match: re.Match[str]) -> str:
        token = match.group()
        return "%s" if token == "?" else token.replace("%", "%%")

    return _QUOTED_OR_PLACEHOLDER.sub(convert, query)


def _pg_array(column: str) -> pl.Expr:
    """A list of text as a PostgreSQL array literal, for COPY into a text[] column."""
    element = (
        pl.element()
        .str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all('"', '\\"', literal=True)
    )
    quoted = pl.col(column).list.eval(pl.concat_str(pl.lit('"'), element, pl.lit('"')))
    return pl.concat_str(pl.lit("{"), quoted.list.join(","), pl.lit("}"))


def _copy_frame(cursor: psycopg.Cursor[Any], target: sql.Composable, frame: pl.DataFrame) -> None:
    """COPY a data frame in as CSV chunks: nulls unquoted-empty, empty text quoted, which is
    exactly how PostgreSQL's CSV format tells them apart."""
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(target)
    with cursor.copy(statement) as copy:
        for chunk in frame.iter_slices(COPY_ROWS_PER_CHUNK):
            buffer = io.BytesIO()
            chunk.write_csv(buffer, include_header=False)
            copy.write(buffer.getvalue())


class PostgresDialect:
    """A PostgreSQL schema: its connections, advisory lock, error mapping and COPY; `location`
    is its URL without any password, safe to pass around and log."""

    # Columns of `sales` that are NOT NULL compare with `=`, so PostgreSQL can hash-join on
    # them; the nullable ones with IS NOT DISTINCT FROM: identical in every field either way.
    null_safe_columns: Sequence[str] | None = SALES.nullable_columns
    binary_collation = ' COLLATE "C"'  # reason codes sort by bytes, as on DuckDB
    temp_table_options = " ON COMMIT DROP"

    # The time limit of a user's query (statement_timeout): an analyst's runaway query must
    # not hold a connection and a snapshot of a shared warehouse for ever.
    QUERY_TIMEOUT_SECONDS: ClassVar[float] = 300.0
    QUERY_ONLY_READS: ClassVar[str] = "the query may only read the warehouse"

    # Locations whose tables this process has created or seen, to skip the DDL afterwards.
    _ready: ClassVar[set[str]] = set()

    def __init__(self, location: str) -> None:
        url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        self.url = url
        self.schema = url.schema
        self.location = url.location
        digest = hashlib.sha256(f"salesflow:{self.schema}".encode()).digest()
        # The advisory lock every writer of this schema takes, in every process and machine
        # (advisory locks are per database, so the schema is all the key needs).
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._schema = sql.Identifier(self.schema)

    def __repr__(self) -> str:
        return f"PostgresWarehouse({self.location!r})"

    def render(self, sql: str) -> str:
        """The shared SQL's `?` as psycopg's `%s`; the search_path finds its plain tables."""
        return _psycopg_placeholders(sql)

    def execute_many(self, con: Any, sql: str, rows: list[list[Any]]) -> None:
        """Through a cursor: psycopg's connection has no executemany."""
        with con.cursor() as cursor:
            cursor.executemany(sql, rows)

    def _sql(self, template: str, **parts: sql.Composable) -> sql.Composed:
        """A statement with `{s}` as the quoted schema (and other quoted parts)."""
        return sql.SQL(template).format(s=self._schema, **parts)

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A new connection whose search_path is the warehouse schema, so callers' SQL names
        tables plainly. The password comes from the URL given in this process, or from libpq
        (PGPASSWORD, ~/.pgpass)."""
        try:
            connection = self.url.connect("salesflow")
        except psycopg.OperationalError as error:
            raise self._connect_failure(error) from None
        with self._database_errors(), connection:
            connection.execute(self._sql("SET search_path TO {s}"))
            connection.commit()
            connection.read_only = read_only
            yield connection

    def _connect_failure(self, error: psycopg.OperationalError) -> Exception:
        """Wrong settings are the user's to fix; anything else may pass, so it is retried."""
        return connect_failure(self.location, error, WarehouseUnavailableError)

    @contextmanager
    def _database_errors(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[None]:
        """Map PostgreSQL's failures onto salesflow's: a timeout fails the batch, a lost
        connection or a held lock is transient (the load task retries it), a missing
        privilege is a configuration problem."""
        try:
            yield
        except psycopg.errors.QueryCanceled as error:
            if source is not None and timeout_seconds is not None:
                raise LoadTimeoutError(
                    source,
                    f"load took longer than {timeout_seconds} s and was rolled back; "
                    "raise load_timeout_seconds or split the file",
                ) from None
            raise WarehouseUnavailableError(
                f"{self.location}: statement cancelled ({first_line(error)})"
            ) from error
        except psycopg.errors.LockNotAvailable:
            raise WarehouseBusyError(
                f"{self.location}: another salesflow process kept the warehouse for "
                f"{LOCK_WAIT_SECONDS:.0f} s"
            ) from None
        except psycopg.OperationalError as error:
            raise WarehouseUnavailableError(
                f"{self.location}: lost the connection to PostgreSQL ({first_line(error)})"
            ) from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise UsageError(f"{self.location}: {first_line(error)}") from None

    @contextmanager
    def write_transaction(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """One transaction holding the schema's advisory lock, so writers take turns. The time
        limit starts once the lock is held, as DuckDB's does. The tables are created first, in
        a transaction of their own, if this process has not seen them yet: a failed first load
        still leaves them for its failure record."""
        with self._connect() as con, self._database_errors(source, timeout_seconds):
            if self.location not in self._ready:
                with con.transaction():
                    self._take_turn(con)
                    self._create_schema(con)
                self._ready.add(self.location)
            with con.transaction():
                self._take_turn(con)
                if timeout_seconds is not None:
                    con.execute(
                        "SELECT set_config('statement_timeout', %s, true)", [_ms(timeout_seconds)]
                    )
                yield con

    def _take_turn(self, con: psycopg.Connection[Any]) -> None:
        """Wait for the schema's advisory lock, held until the transaction ends (or its
        session dies): every salesflow writer on any machine queues on it."""
        con.execute("SELECT set_config('lock_timeout', %s, true)", [_ms(LOCK_WAIT_SECONDS)])
        con.execute("SELECT pg_advisory_xact_lock(%s)", [self.lock_key])
        con.execute("SET LOCAL lock_timeout TO DEFAULT")

    def _create_schema(self, con: psycopg.Connection[Any]) -> None:
        exists = con.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
        ).fetchone()
        if not exists:  # CREATE SCHEMA needs a privilege that using an existing one does not
            con.execute(self._sql("CREATE SCHEMA {s}"))
        con.execute(self._sql(SCHEMA_DDL))

    def ensure_schema(self) -> None:
        """Create the schema, tables and indexes that are missing, whatever this process saw
        before: the flow calls it once per run, so a bad location fails the run early."""
        self._ready.discard(self.location)
        with self.write_transaction():
            pass

    @contextmanager
    def scratch(self) -> Iterator[psycopg.Connection[Any]]:
        """Rolled back: temporary tables are all a dry run writes (no read-only transaction,
        which PostgreSQL would not let create one)."""
        with self._connect() as con:
            try:
                yield con
            finally:
                con.rollback()

    def stage_parquet(
        self, con: Any, name: str, path: Path, columns: Sequence[StagedColumn]
    ) -> None:
        """COPY the Parquet columns into a temporary table dropped at commit.

        PostgreSQL text cannot hold a NUL, which a raw field may: it is staged as U+FFFD. Only
        the rows validation rejected as bad_encoding hold one, and the statements reading a
        staged relation (the raw-money check) count only loaded rows, so no figure changes.
        """
        declared = ", ".join(f"{column.name} {COLUMN_TYPES[column.type]}" for column in columns)
        con.execute(f"CREATE TEMP TABLE {name} ({declared}) ON COMMIT DROP")
        frame = pl.read_parquet(path, columns=[column.source for column in columns], glob=False)
        renamed = frame.rename({column.source: column.name for column in columns}).with_columns(
            pl.col(pl.String).str.replace_all("\x00", "\ufffd", literal=True)
        )
        self.insert_frame(con, name, renamed, qualified=False)
        con.execute(f"ANALYZE {name}")

    def insert_frame(
        self, con: Any, table: str, frame: pl.DataFrame, qualified: bool = True
    ) -> None:
        """COPY a frame into a warehouse table (or, unqualified, a temporary one)."""
        target = (
            self._sql("{s}.{t}", t=sql.Identifier(table)) if qualified else sql.Identifier(table)
        )
        lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
        with con.cursor() as cursor:
            _copy_frame(
                cursor, target, frame.with_columns(_pg_array(name).alias(name) for name in lists)
            )

    def save_rows(self, con: Any, table: str, batch_id: str, folder: Path) -> None:
        """In PostgreSQL's binary COPY format: it round-trips every type exactly."""
        statement = self._sql(
            "COPY (SELECT * FROM {s}.{t} WHERE batch_id = {b}) TO STDOUT (FORMAT binary)",
            t=sql.Identifier(table),
            b=sql.Literal(batch_id),
        )
        with (
            con.cursor() as cursor,
            (folder / f"{table}.pgcopy").open("wb") as target,
            cursor.copy(statement) as copy,
        ):
            for data in copy:
                target.write(data)

    def restore_rows(self, con: Any, table: str, folder: Path) -> None:
        statement = self._sql("COPY {s}.{t} FROM STDIN (FORMAT binary)", t=sql.Identifier(table))
        with (
            con.cursor() as cursor,
            (folder / f"{table}.pgcopy").open("rb") as saved,
            cursor.copy(statement) as copy,
        ):
            while data := saved.read(1 << 20):
                copy.write(data)

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read-only query, in a read-only transaction. Tables are found in the
        warehouse schema; `?` placeholders are accepted as DuckDB accepts them."""
        with self._connect(read_only=True) as con, con.cursor() as cursor:
            if params:
                cursor.execute(_psycopg_placeholders(sql), params)
            else:
                cursor.execute(sql)  # without parameters psycopg sends it as it is
            rows = cursor.fetchall() if cursor.description is not None else []
            con.rollback()
        return rows

    def holds_data(self) -> bool:
        """The schema has the `batches` table. Connecting is not optional: an unreachable
        server or a missing database raises as everywhere else, it is not an empty warehouse."""
        with self._connect(read_only=True) as con:
            batches = self._sql("{s}.batches").as_string(con)
            row = con.execute("SELECT to_regclass(%s) IS NOT NULL", [batches]).fetchone()
            con.rollback()
        return bool(row and row[0])

    @contextmanager
    def _query_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a READ ONLY transaction whose statements stop after
        QUERY_TIMEOUT_SECONDS; the caller rolls it back."""
        with self._connect(read_only=True) as con:
            con.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                [_ms(self.QUERY_TIMEOUT_SECONDS)],
            )
            yield con

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's query, which may only read the warehouse: in a READ ONLY transaction with a
        time limit, rolled back. It is prepared, so it travels by the extended protocol, which
        takes one statement: `COMMIT; INSERT ...` cannot end the read-only transaction (the
        simple protocol would run both). No parameters, so a `%` or `?` stays as written. The
        rows come to the client in full, then are cut to `limit`. A lost connection stays a
        WarehouseUnavailableError."""
        with self._query_connection() as con, con.cursor() as cursor:
            try:
                cursor.execute(sql, prepare=True)
            except psycopg.Error as error:
                if con.broken:
                    raise
                line = error_line(error)
                if isinstance(error, psycopg.errors.QueryCanceled):
                    line = f"stopped after {self.QUERY_TIMEOUT_SECONDS:g} s, the query time limit"
                elif isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
                    raise UsageError(f"query failed: {self.QUERY_ONLY_READS} ({line})") from None
                elif "multiple commands" in line:
                    raise UsageError(
                        f"query failed: {self.QUERY_ONLY_READS}; give one statement ({line})"
                    ) from None
                raise UsageError(f"query failed: {line}") from None
            columns = [column.name for column in cursor.description or []]
            rows = cursor.fetchmany(limit) if cursor.description is not None else []
            con.rollback()
        return QueryResult(columns, rows)


class PostgresWarehouse(SqlWarehouse):
    """A PostgreSQL schema holding the warehouse's tables."""

    dialect: PostgresDialect

    def __init__(self, location: str) -> None:
        super().__init__(PostgresDialect(location))
        self.url = self.dialect.url
        self.schema = self.dialect.schema
        self.lock_key = self.dialect.lock_key

    def __repr__(self) -> str:
        return f"PostgresWarehouse({self.location!r})"


def _ms(seconds: float) -> str:
    """A PostgreSQL time setting in whole milliseconds, never 0 (which would mean no limit)."""
    return str(max(1, ceil(seconds * 1000)))
