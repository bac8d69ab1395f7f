"""Warehouses: where validated sales land, behind one small interface (see base.Warehouse)."""

from __future__ import annotations

import re
from typing import Final, Literal

from duckdb import Error as DuckDBError
from psycopg import Error as PostgresError

from salesflow.errors import UsageError
from salesflow.pg_url import URL_SCHEMES, is_postgres_url
from salesflow.text import printable
from salesflow.warehouse.base import Warehouse
from salesflow.warehouse.dialects.duckdb import DuckDBWarehouse
from salesflow.warehouse.dialects.postgres import PostgresWarehouse

# What a warehouse's `fetch` raises when the database refuses a query (connection trouble is
# already a salesflow error): readers turn it into a one-line UsageError.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DuckDBError, PostgresError)

WarehouseKind = Literal["duckdb", "postgres"]
ACCEPTED_LOCATIONS: Final = "postgresql://..., postgres://..., or a DuckDB file path"

# A URL scheme of two characters or more (one letter and a colon is a Windows drive, `C:\wh`).
_SCHEME: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?P<rest>.*)", re.DOTALL)
# Schemes that mean a database or remote storage even without `//` after the colon
# (`md:my_db` is MotherDuck, `sqlite:wh.db`, `jdbc:postgresql:...`): never a local file name.
_URL_ONLY_SCHEMES: Final = frozenset(
    {
        "postgresql",
        "postgres",
        "pg",
        "psql",
        "jdbc",
        "mysql",
        "mariadb",
        "sqlite",
        "duckdb",
        "md",
        "motherduck",
        "redshift",
        "snowflake",
        "bigquery",
        "mssql",
        "sqlserver",
        "oracle",
        "file",
        "http",
        "https",
        "s3",
        "gs",
        "gcs",
        "az",
        "abfs",
        "abfss",
        "hdfs",
    }
)


def _url_scheme(location: str) -> str | None:
    """The scheme when `location` reads as a URL: `scheme://...` or `scheme:/...` (no useful
    file path starts with a folder named `word:`), or a known database or storage scheme
    followed by a colon. A plain or Windows-style path (`./a:b.duckdb`, `C:\\wh.duckdb`) is not
    a URL."""
    match = _SCHEME.fullmatch(location.strip())
    if match is None:
        return None
    scheme, rest = match["scheme"], match["rest"]
    if rest.startswith("/") or scheme.lower() in _URL_ONLY_SCHEMES:
        return scheme
    return None


def warehouse_kind(location: str, name: str | None = "warehouse") -> WarehouseKind:
    """Which warehouse `location` names: a `postgresql://` or `postgres://` URL is PostgreSQL,
    a path is a DuckDB file. The one place this is decided, for settings and `open_warehouse`
    alike, so that a misspelled URL (`postgresq://...`) is refused instead of becoming a DuckDB
    file of that name. `name` (the setting or option, None when the caller names it) starts the
    message."""
    if is_postgres_url(location):
        return "postgres"
    scheme = _url_scheme(location)
    if scheme is None:
        return "duckdb"
    problem = (
        "malformed PostgreSQL URL"
        if scheme.lower() in URL_SCHEMES
        else f"unknown URL scheme '{printable(scheme)}'"
    )
    where = f"'{printable(location)}'" if name is None else f"{name} '{printable(location)}'"
    raise UsageError(f"{where}: {problem}; expected {ACCEPTED_LOCATIONS}")


def open_warehouse(location: str) -> Warehouse:
    """The warehouse at `location`: a `postgresql://` (or `postgres://`) URL for PostgreSQL,
    a DuckDB file path (the embedded default); any other URL is a UsageError."""
    if warehouse_kind(location) == "postgres":
        return PostgresWarehouse(location)
    return DuckDBWarehouse(location)


__all__ = [
    "ACCEPTED_LOCATIONS",
    "DATABASE_ERRORS",
    "DuckDBWarehouse",
    "PostgresWarehouse",
    "Warehouse",
    "open_warehouse",
    "warehouse_kind",
]
