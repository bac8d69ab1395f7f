"""Fixtures of the warehouse tests: one `warehouse` per backend, a small day of sales."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from salesflow.warehouse.base import Warehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema

BACKENDS = ("duckdb", "postgres")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database for this module on the local PostgreSQL, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """A warehouse in a fresh DuckDB file (not created until first used)."""
    return DuckDBWarehouse(tmp_path / "wh" / "warehouse.duckdb")


@pytest.fixture
def postgres_warehouse(database: str) -> Iterator[PostgresWarehouse]:
    """A warehouse in its own schema, dropped after the test."""
    with fresh_schema(database) as url:
        yield PostgresWarehouse(url)


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    """The same tests against each backend. The PostgreSQL database is only created for the
    `postgres` case, so the `duckdb` case runs without a server."""
    return request.getfixturevalue(f"{request.param}_warehouse")  # type: ignore[no-any-return]


@pytest.fixture
def backend(warehouse: Warehouse) -> str:
    """Which backend `warehouse` is; only for the few places where the backends differ."""
    return "postgres" if isinstance(warehouse, PostgresWarehouse) else "duckdb"


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
