"""What a SQL database must supply for `SqlWarehouse` to run the one load algorithm on it.

The warehouse's statements are written once, with `?` placeholders and plain table names; a
dialect renders them, owns its connections (locks, transactions, time limits, error mapping)
and moves bulk rows in its own way: DuckDB reads the staged Parquet files where they lie,
PostgreSQL receives them by COPY. What truly differs in the SQL is a flag here, not a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import polars as pl

from salesflow.warehouse.base import QueryResult


class StagedColumn(NamedTuple):
    """One column of a staged relation: its name there, its column in the Parquet file, and
    its logical type (salesflow.warehouse.tables.LOGICAL_TYPES)."""

    name: str
    source: str
    type: str


class Dialect(Protocol):
    """One database behind SqlWarehouse."""

    location: str
    # Columns compared with IS NOT DISTINCT FROM when rows are matched for duplicates; the
    # others with `=` (PostgreSQL hash-joins only on `=`). None: all of them.
    null_safe_columns: Sequence[str] | None
    # Appended to a text ORDER BY that must sort by bytes (PostgreSQL's `COLLATE "C"`).
    binary_collation: str
    # Appended to CREATE TEMP TABLE so temporary tables end with the transaction.
    temp_table_options: str

    def render(self, sql: str) -> str:
        """A shared `?` statement in the database's placeholders."""

    def write_transaction(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> AbstractContextManager[Any]:
        """A connection in one transaction, the writers' turn held, the tables created:
        committed when the block ends, rolled back if it fails. A load over
        `timeout_seconds` is rolled back as a LoadTimeoutError of `source`."""

    def scratch(self) -> AbstractContextManager[Any]:
        """A connection whose work (temporary tables of a dry run) is rolled back."""

    def ensure_schema(self) -> None:
        """Create the tables (and on a server, the schema and indexes) that are missing."""

    def stage_parquet(
        self, con: Any, name: str, path: Path, columns: Sequence[StagedColumn]
    ) -> None:
        """A temporary relation `name` of the given Parquet columns, for the statements of
        this transaction."""

    def insert_frame(self, con: Any, table: str, frame: pl.DataFrame) -> None:
        """Append a frame whose columns are the table's, in order."""

    def execute_many(self, con: Any, sql: str, rows: list[list[Any]]) -> None:
        """One rendered statement for many parameter rows, in the connection's transaction."""

    def save_rows(self, con: Any, table: str, batch_id: str, folder: Path) -> None:
        """Write a batch's rows of `table` to a file in `folder` that restore_rows reads."""

    def restore_rows(self, con: Any, table: str, folder: Path) -> None:
        """Insert the rows save_rows wrote for `table`."""

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one of salesflow's read queries (`?` placeholders) on a read-only connection."""

    def holds_data(self) -> bool:
        """Whether the warehouse exists with its tables (an unreachable server raises)."""

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's query, confined to reading the warehouse."""
