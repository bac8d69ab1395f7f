"""The same report from a PostgreSQL warehouse: the queries are plain SQL with `?`, so the same
files loaded into both warehouses give the same page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from salesflow.report import CHARTS, write_report
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.prefect_server import fresh_postgres_database, fresh_schema
from tests.report.conftest import load_files


@pytest.fixture
def postgres_warehouse() -> Iterator[PostgresWarehouse]:
    with fresh_postgres_database() as database, fresh_schema(database, "r") as url:
        yield PostgresWarehouse(url)


def comparable(page: str) -> str:
    """The page without what differs by design: the generation time and the location."""
    return re.sub(r'<p class="meta" id="generated">[^\n]*', "", page)


def test_a_postgres_warehouse_gives_the_same_report_as_duckdb(
    postgres_warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    generate_sales(tmp_path / "landing", date(2024, 3, 1), 6, 150, seed=3, dirty_ratio=0.03)
    duck = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    load_files(tmp_path / "landing", duck, tmp_path / "staging-duck")
    load_files(tmp_path / "landing", postgres_warehouse, tmp_path / "staging-pg")
    start, end = date(2024, 3, 2), date(2024, 3, 5)

    from_duck = write_report(duck, tmp_path / "duck.html", start, end).read_text(encoding="utf-8")
    from_pg = write_report(postgres_warehouse, tmp_path / "pg.html", start, end).read_text(
        encoding="utf-8"
    )

    assert from_pg.count("Plotly.newPlot(") == len(CHARTS)
    assert "<dt>Rows loaded</dt><dd>0</dd>" not in from_pg
    assert comparable(from_pg) == comparable(from_duck)
