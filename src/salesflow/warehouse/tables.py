"""The warehouse's tables, declared once; each backend renders the DDL in its own dialect.

`sales` takes its columns and their nullability from the data contract (`SalesRecord`), so the
table cannot drift from what the contract checks. Types are logical names that a backend maps
to its own (see `render_ddl`). Keys and indexes marked `server_only` exist on PostgreSQL only:
DuckDB's ART indexes make its bulk loads slower and it never needed them to be fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from salesflow.contract import SALES_COLUMNS, SalesRecord

# The logical column types; every dialect maps each of them (see render_ddl).
LOGICAL_TYPES: Final = (
    "text",
    "text[]",
    "timestamp",
    "timestamptz",
    "date",
    "integer",
    "bigint",
    "double",
    "money",  # a row's amounts: decimal(18, 4)
    "amount",  # sums of amounts: decimal(38, 4)
)


@dataclass(frozen=True)
class Column:
    """One column: its logical type, whether it may be NULL, whether it is the table's key."""

    name: str
    type: str
    nullable: bool = False
    key: bool = False
    key_server_only: bool = False


@dataclass(frozen=True)
class Table:
    """One table and the columns PostgreSQL indexes it on (one single-column index each)."""

    name: str
    columns: tuple[Column, ...]
    server_indexes: tuple[str, ...] = ()

    @property
    def nullable_columns(self) -> tuple[str, ...]:
        """Names of the columns that may be NULL, in table order."""
        return tuple(column.name for column in self.columns if column.nullable)


def _col(spec: str, nullable: bool = False, key: bool = False, server_key: bool = False) -> Column:
    """A column from "name type"."""
    name, type_ = spec.split()
    return Column(name, type_, nullable, key, server_key)


_SALES_TYPES: Final = {
    "order_id": "text",
    "order_ts": "timestamp",
    "order_date": "date",
    "customer_id": "text",
    "sku": "text",
    "product": "text",
    "category": "text",
    "quantity": "bigint",
    "unit_price": "money",
    "total": "money",
    "ticket_size": "text",
    "month": "text",
    "weekday": "text",
    "region": "text",
    "batch_id": "text",
    "source_row": "bigint",
}


def _sales_columns() -> tuple[Column, ...]:
    """The contract's columns, in its order and with its nullability."""
    fields = SalesRecord.to_schema().columns
    return tuple(
        Column(name, _SALES_TYPES[name], nullable=bool(fields[name].nullable))
        for name in SALES_COLUMNS
    )


SALES: Final = Table("sales", _sales_columns(), server_indexes=("batch_id", "order_date"))

SALES_REJECTED: Final = Table(
    "sales_rejected",
    (_col("batch_id text"), _col("source_row bigint"), _col("reasons text[]"), _col("raw text")),
    server_indexes=("batch_id",),
)

BATCHES: Final = Table(
    "batches",
    (
        _col("batch_id text", server_key=True),
        _col("source text"),
        _col("sha256 text", nullable=True),
        _col("rows_in bigint", nullable=True),
        _col("rows_loaded bigint"),
        _col("rows_rejected bigint"),
        _col("amount_loaded amount"),
        _col("status text"),
        _col("error text", nullable=True),
        _col("contract_version text"),
        _col("started_at timestamptz"),
        _col("finished_at timestamptz"),
        _col("flow_run_id text", nullable=True),
        # The landing file's size and modification time when its loaded content was hashed:
        # an unchanged re-run that sees both again skips the file without reading it.
        _col("source_size bigint", nullable=True),
        _col("source_mtime_ns bigint", nullable=True),
    ),
)

RUNS: Final = Table(
    "runs",
    (
        _col("flow_run_id text", server_key=True),
        _col("flow_name text"),
        _col("state text"),
        _col("started_at timestamptz", nullable=True),
        _col("finished_at timestamptz"),
        *(
            _col(f"{name} bigint")
            for name in (
                "batches",
                "loaded",
                "skipped",
                "failed",
                "rows_in",
                "rows_loaded",
                "rows_rejected",
            )
        ),
        _col("amount_loaded amount"),
        _col("message text", nullable=True),
    ),
)

DAILY_SALES: Final = Table(
    "daily_sales",
    (
        _col("order_date date"),
        _col("region text"),
        _col("category text", nullable=True),
        _col("orders bigint"),
        _col("units bigint"),
        _col("net_revenue amount"),
        _col("returns_value amount"),
    ),
    server_indexes=("order_date",),
)

WATERMARKS: Final = Table(
    "watermarks",
    (_col("source text", key=True), _col("watermark timestamptz"), _col("updated_at timestamptz")),
)

SCHEMA_VERSION_TABLE: Final = Table(
    "schema_version", (_col("version integer"), _col("upgraded_at timestamptz"))
)

ANOMALIES: Final = Table(
    "anomalies",
    (
        _col("order_date date"),
        _col("region text"),
        _col("kpi text"),
        *(_col(f"{name} double") for name in ("value", "median", "mad", "robust_z")),
        _col("direction text"),
        _col("window_days integer"),
        _col("detected_at timestamptz"),
        _col("flow_run_id text", nullable=True),
    ),
    server_indexes=("order_date",),
)

TABLES: Final = (
    SALES,
    SALES_REJECTED,
    BATCHES,
    RUNS,
    DAILY_SALES,
    WATERMARKS,
    SCHEMA_VERSION_TABLE,
    ANOMALIES,
)


def render_ddl(types: Mapping[str, str], *, prefix: str = "", server: bool = False) -> str:
    """CREATE TABLE (and, on a server, CREATE INDEX) IF NOT EXISTS for every table.

    `types` maps each logical type to the dialect's; `prefix` qualifies the names (e.g. a
    PostgreSQL schema placeholder); `server` adds the keys and indexes only PostgreSQL has.
    """
    statements: list[str] = []
    for table in TABLES:
        lines = []
        for column in table.columns:
            if column.key or (server and column.key_server_only):
                constraint = " PRIMARY KEY"
            else:
                constraint = "" if column.nullable else " NOT NULL"
            lines.append(f"    {column.name} {types[column.type]}{constraint}")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {prefix}{table.name} (\n" + ",\n".join(lines) + "\n);"
        )
        if server:
            statements.extend(
                f"CREATE INDEX IF NOT EXISTS {table.name}_{column} "
                f"ON {prefix}{table.name} ({column});"
                for column in table.server_indexes
            )
    return "\n" + "\n".join(statements) + "\n"
