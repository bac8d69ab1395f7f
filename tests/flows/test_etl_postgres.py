"""The salesflow-etl flow end to end into PostgreSQL, checked against the same run into DuckDB:
the two warehouses must hold the same rows, counts and money, and keep the same guarantees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from salesflow import stages
from salesflow.config import Settings
from salesflow.errors import ReconciliationError
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.options import RunOptions
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.conftest import CANONICAL_HEADER, COURSE_CSV, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

TABLES = ("sales", "sales_rejected", "daily_sales", "batches")
BATCHES = 4


def checksums(warehouse: PostgresWarehouse) -> dict[str, str]:
    return {table: warehouse.table_checksum(table) for table in TABLES}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres(database: str) -> Iterator[PostgresWarehouse]:
    """A PostgreSQL warehouse in a schema of its own, dropped after the test."""
    with fresh_schema(database, "e2e") as url:
        yield PostgresWarehouse(url)


@pytest.fixture(scope="module")
def dirty_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("landing")
    generate_sales(landing, date(2024, 5, 1), BATCHES, 300, seed=7, dirty_ratio=0.08, fmt="csv")
    return landing


# Every column of every public table but the times, in natural key order: what both
# warehouses must agree on. (COLLATE "C" is not needed: batch ids are ASCII file names.)
SAME_IN_BOTH = {
    "sales": "SELECT * FROM sales ORDER BY batch_id, source_row",
    "sales_rejected": "SELECT * FROM sales_rejected ORDER BY batch_id, source_row",
    "daily_sales": "SELECT * FROM daily_sales ORDER BY order_date, region, category",
    "batches": "SELECT batch_id, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, "
    "status, error, contract_version FROM batches ORDER BY batch_id",
    "money per batch": "SELECT batch_id, count(*), sum(total), sum(quantity) FROM sales "
    "GROUP BY batch_id ORDER BY batch_id",
}


def test_a_dirty_landing_loads_into_postgres_exactly_as_into_duckdb(
    dirty_landing: Path, postgres: PostgresWarehouse, settings: Settings, tmp_path: Path
) -> None:
    into_postgres = run_etl(
        [dirty_landing], settings, RunOptions(warehouse=postgres.location, accept_rejects=True)
    )
    into_duckdb = run_etl(
        [dirty_landing],
        settings,
        RunOptions(warehouse=str(tmp_path / "duck.duckdb"), accept_rejects=True),
    )
    duck = DuckDBWarehouse(into_duckdb.warehouse)

    assert into_postgres.warehouse == postgres.location
    assert [o.status for o in into_postgres.outcomes] == [BatchStatus.LOADED] * BATCHES
    for outcome in into_postgres.outcomes:  # every row in exactly one table
        data_lines = len((dirty_landing / outcome.batch_id).read_text().splitlines()) - 1
        assert outcome.rows_loaded + outcome.rows_rejected == outcome.rows_in == data_lines
        assert outcome.rows_rejected > 0
        rows = postgres.fetch(
            "SELECT source_row FROM sales WHERE batch_id = ? "
            "UNION ALL SELECT source_row FROM sales_rejected WHERE batch_id = ? ORDER BY 1",
            [outcome.batch_id, outcome.batch_id],
        )
        assert [row[0] for row in rows] == list(range(1, data_lines + 1))
    for name, query in SAME_IN_BOTH.items():
        assert postgres.fetch(query) == duck.fetch(query), name
    assert [_counts(o) for o in into_postgres.outcomes] == [
        _counts(o) for o in into_duckdb.outcomes
    ]
    assert postgres.fetch("SELECT state, batches, loaded, rows_in FROM runs") == [
        ("Completed", BATCHES, BATCHES, sum(o.rows_in or 0 for o in into_postgres.outcomes))
    ]


def _counts(outcome: BatchOutcome) -> tuple[Any, ...]:
    return (
        outcome.batch_id,
        outcome.rows_in,
        outcome.rows_loaded,
        outcome.rows_rejected,
        outcome.amount_loaded,
        outcome.reason_counts,
    )


def test_rerunning_into_postgres_skips_everything_and_force_changes_nothing(
    dirty_landing: Path, postgres: PostgresWarehouse, settings: Settings
) -> None:
    run_etl([dirty_landing], settings, RunOptions(warehouse=postgres.location, accept_rejects=True))
    before = checksums(postgres)

    again = run_etl(
        [dirty_landing], settings, RunOptions(warehouse=postgres.location, accept_rejects=True)
    )
    assert [o.status for o in again.outcomes] == [BatchStatus.SKIPPED] * BATCHES
    skipped = checksums(postgres)
    forced = run_etl(
        [dirty_landing],
        settings,
        RunOptions(warehouse=postgres.location, force=True, accept_rejects=True),
    )

    assert [o.status for o in forced.outcomes] == [BatchStatus.LOADED] * BATCHES
    data = ("sales", "sales_rejected", "daily_sales")
    assert {t: skipped[t] for t in data} == {t: before[t] for t in data}
    assert {t: checksums(postgres)[t] for t in data} == {t: before[t] for t in data}
    assert postgres.fetch("SELECT count(*), count(DISTINCT batch_id) FROM batches") == [
        (BATCHES, BATCHES)
    ]
    assert postgres.fetch("SELECT count(*) FROM runs") == [(3,)]


def _rows(count: int, region: str, day: str) -> list[str]:
    return [
        f"o{n},{day}T10:{n % 60:02d}:00,c{n},S{n},P,Cat,{n % 5 + 1},{n % 7 + 1}.50,{region}"
        for n in range(1, count + 1)
    ]


def _fail_read_back(outcome: BatchOutcome, warehouse: Any) -> None:
    """Stands in for stages.check_committed: every committed load reads back wrong."""
    if outcome.status == BatchStatus.LOADED:
        raise ReconciliationError(outcome.source, "read back after commit differs (injected)")


def test_a_failure_after_the_commit_rolls_postgres_back_to_the_previous_version(
    tmp_path: Path, postgres: PostgresWarehouse, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "in"
    day = write_csv(landing / "day.csv", CANONICAL_HEADER, *_rows(4, "North", "2024-03-01"))
    other = write_csv(landing / "other.csv", CANONICAL_HEADER, *_rows(2, "South", "2024-03-02"))
    run_etl([landing], settings, RunOptions(warehouse=postgres.location))
    before = checksums(postgres)
    loaded_sha = postgres.loaded_sha256("in/day.csv")

    write_csv(day, CANONICAL_HEADER, *_rows(6, "East", "2024-03-03"))  # a corrected file
    monkeypatch.setattr(stages, "check_committed", _fail_read_back)
    failed = run_etl([day, other], settings, RunOptions(warehouse=postgres.location))

    assert [o.status for o in failed.outcomes] == [BatchStatus.FAILED, BatchStatus.SKIPPED]
    assert "injected" in (failed.outcomes[0].error or "")
    after = checksums(postgres)
    data = ("sales", "sales_rejected", "daily_sales")
    assert {t: after[t] for t in data} == {t: before[t] for t in data}
    assert postgres.fetch("SELECT status, sha256 FROM batches WHERE batch_id = 'in/day.csv'") == [
        ("failed", loaded_sha)
    ]
    assert not list(settings.staging_path.rglob("undo/*"))  # undo copies cleaned up

    monkeypatch.undo()
    fixed = run_etl([day], settings, RunOptions(warehouse=postgres.location))
    assert fixed.outcomes[0].status == BatchStatus.LOADED
    assert postgres.fetch(
        "SELECT count(*), min(region) FROM sales WHERE batch_id = 'in/day.csv'"
    ) == [(6, "East")]


def test_the_cli_loads_into_postgres_given_a_url(
    tmp_path: Path, postgres: PostgresWarehouse
) -> None:
    from tests.test_cli import run_in_fresh_process

    result = run_in_fresh_process(
        tmp_path, "run", str(COURSE_CSV), "--accept-rejects", "--warehouse", postgres.location
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert postgres.fetch("SELECT count(*), sum(total) FROM sales") == [(8, Decimal("6306.25"))]
    assert postgres.fetch("SELECT count(*) FROM sales_rejected") == [(5,)]
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()  # not taken for a file name
