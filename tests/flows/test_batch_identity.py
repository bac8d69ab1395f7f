"""Batch identity end to end, on DuckDB and PostgreSQL: a batch is its source, so a same-named
file from another folder never replaces another batch's rows, and the same content under a second
name is never loaded twice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.warehouse import DuckDBWarehouse, open_warehouse
from salesflow.warehouse.base import SCHEMA_VERSION
from tests.conftest import CANONICAL_HEADER, COURSE_CSV, DATA, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

COURSE_REVENUE = Decimal("6306.25")  # the course file's valid rows: 8 of 13


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["duckdb", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh warehouse of each kind."""
    if request.param == "duckdb":
        yield str(tmp_path / "wh.duckdb")
        return
    database = request.getfixturevalue("database")
    with fresh_schema(database, "ident") as url:
        yield url


def revenue(location: str) -> Decimal:
    return Decimal(
        open_warehouse(location).fetch("SELECT coalesce(sum(total), 0) FROM sales")[0][0]
    )


def rows_by_batch(location: str) -> dict[str, int]:
    rows = open_warehouse(location).fetch(
        "SELECT batch_id, count(*) FROM sales GROUP BY batch_id ORDER BY batch_id"
    )
    return {batch_id: count for batch_id, count in rows}


def test_a_same_named_file_from_another_folder_is_another_batch(
    location: str, settings: Settings, tmp_path: Path
) -> None:
    first = write_csv(
        tmp_path / "a" / "sales.csv",
        CANONICAL_HEADER,
        "A1,2024-03-01T10:00:00,c1,SKU1,Lamp,Home,1,10.00,North",
        "A2,2024-03-01T11:00:00,c2,SKU2,Mug,Home,2,5.00,North",
    )
    second = write_csv(
        tmp_path / "b" / "sales.csv",
        CANONICAL_HEADER,
        "B1,2024-03-01T12:00:00,c3,SKU3,Desk,Office,1,200.00,South",
    )

    run_etl([first], settings, RunOptions(warehouse=location))
    later = run_etl([second], settings, RunOptions(warehouse=location))

    assert [(o.batch_id, o.status) for o in later.outcomes] == [("b/sales.csv", BatchStatus.LOADED)]
    assert rows_by_batch(location) == {"a/sales.csv": 2, "b/sales.csv": 1}
    assert revenue(location) == Decimal("220.00")


def test_outside_the_landing_root_a_batch_is_its_absolute_path(
    location: str, settings: Settings, tmp_path: Path
) -> None:
    landing_elsewhere = settings.model_copy(update={"landing_dir": tmp_path / "landing"})
    first = write_csv(tmp_path / "a" / "sales.csv", CANONICAL_HEADER, "A1,2024-03-01,c,S,P,C,1,1,N")
    second = write_csv(
        tmp_path / "b" / "sales.csv", CANONICAL_HEADER, "B1,2024-03-01,c,S,P,C,2,1,N"
    )

    run_etl([first], landing_elsewhere, RunOptions(warehouse=location))
    run_etl([second], landing_elsewhere, RunOptions(warehouse=location))

    assert rows_by_batch(location) == {f"{tmp_path}/a/sales.csv": 1, f"{tmp_path}/b/sales.csv": 1}


def test_the_same_content_under_another_name_is_skipped_naming_the_earlier_batch(
    location: str, settings: Settings, tmp_path: Path
) -> None:
    original = tmp_path / "x" / "ventas.csv"
    copy = tmp_path / "y" / "copia.csv"
    for path in (original, copy):
        path.parent.mkdir(parents=True)
        shutil.copy(COURSE_CSV, path)

    run_etl([original], settings, RunOptions(warehouse=location, accept_rejects=True))
    again = run_etl([copy], settings, RunOptions(warehouse=location, accept_rejects=True))
    rerun = run_etl([original, copy], settings, RunOptions(warehouse=location, accept_rejects=True))

    (skipped,) = again.outcomes
    assert skipped.status == BatchStatus.SKIPPED
    assert skipped.error == (
        f"{copy}: same content as batch 'x/ventas.csv', already loaded; not loaded again "
        "(--force loads it as a batch of its own)"
    )
    assert [o.status for o in rerun.outcomes] == [BatchStatus.SKIPPED, BatchStatus.SKIPPED]
    assert revenue(location) == COURSE_REVENUE
    assert rows_by_batch(location) == {"x/ventas.csv": 8}
    recorded = open_warehouse(location).fetch(
        "SELECT status, rows_in FROM batches WHERE batch_id = 'y/copia.csv'"
    )
    assert recorded == [("skipped", None)]  # recorded, and never taken as loaded


def test_the_same_course_rows_in_other_bytes_are_refused_naming_the_earlier_batch(
    location: str, settings: Settings, tmp_path: Path
) -> None:
    """No order_id column: ids are derived from the file name, so only the rows tell."""
    original = tmp_path / "x" / "ventas.csv"
    original.parent.mkdir(parents=True)
    shutil.copy(COURSE_CSV, original)
    crlf = tmp_path / "y" / "ventas_crlf.csv"
    crlf.parent.mkdir(parents=True)
    crlf.write_bytes(COURSE_CSV.read_bytes().replace(b"\n", b"\r\n"))

    run_etl([original], settings, RunOptions(warehouse=location, accept_rejects=True))
    refused = run_etl([crlf], settings, RunOptions(warehouse=location))
    forced = run_etl([crlf], settings, RunOptions(warehouse=location, force=True))

    (failed,) = refused.outcomes
    assert failed.status == BatchStatus.FAILED
    assert failed.error is not None
    assert "duplicate_in_warehouse 8" in failed.error
    assert "(rows already loaded by batch 'x/ventas.csv')" in failed.error
    assert forced.outcomes[0].status == BatchStatus.FAILED  # --force skips no row check
    assert revenue(location) == COURSE_REVENUE


def test_a_warehouse_written_by_the_previous_schema_is_upgraded_and_reruns_identically(
    settings: Settings, tmp_path: Path
) -> None:
    """tests/data/legacy holds a warehouse written by salesflow before batch ids were paths
    (schema 1: bare file names), from landing files at /tmp/salesflow-legacy-landing."""
    landing = Path("/tmp/salesflow-legacy-landing")
    shutil.rmtree(landing, ignore_errors=True)
    shutil.copytree(DATA / "legacy" / "landing", landing)
    legacy = tmp_path / "legacy.duckdb"
    shutil.copy(DATA / "legacy" / "warehouse-v1.duckdb", legacy)
    clean = tmp_path / "clean.duckdb"
    try:
        upgraded = run_etl(
            [landing], settings, RunOptions(warehouse=str(legacy), accept_rejects=True)
        )
        run_etl([landing], settings, RunOptions(warehouse=str(clean), accept_rejects=True))
        (landing / "ventas.csv").write_text(
            (landing / "ventas.csv").read_text() + "2024-01-21,Mouse,1,25.99,Sur\n"
        )
        changed = run_etl(
            [landing], settings, RunOptions(warehouse=str(legacy), accept_rejects=True)
        )
        run_etl([landing], settings, RunOptions(warehouse=str(clean), accept_rejects=True))
    finally:
        shutil.rmtree(landing, ignore_errors=True)

    ids = [f"{landing}/{name}" for name in ("sales_2024-01-01.csv", "sales_2024-01-02.csv")]
    ids.append(f"{landing}/ventas.csv")
    assert [(o.batch_id, o.status) for o in upgraded.outcomes] == [
        (batch_id, BatchStatus.SKIPPED) for batch_id in ids
    ]
    assert [o.status for o in changed.outcomes] == [
        BatchStatus.SKIPPED,
        BatchStatus.SKIPPED,
        BatchStatus.LOADED,
    ]
    old, new = DuckDBWarehouse(legacy), DuckDBWarehouse(clean)
    for table in ("sales", "sales_rejected", "daily_sales"):
        assert old.table_checksum(table) == new.table_checksum(table), table
    assert old.fetch("SELECT batch_id, rows_in FROM batches ORDER BY 1") == [
        (ids[0], 40),
        (ids[1], 40),
        (ids[2], 14),
    ]
    with duckdb.connect(str(legacy), read_only=True) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_warehouse_of_a_newer_schema_is_refused_not_rewritten(
    settings: Settings, tmp_path: Path
) -> None:
    location = tmp_path / "future.duckdb"
    DuckDBWarehouse(location).ensure_schema()
    with duckdb.connect(str(location)) as con:
        con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    day = write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, "A1,2024-03-01,c,S,P,C,1,1,N")

    newer = (
        rf"schema version {SCHEMA_VERSION + 1} is newer than this salesflow's "
        rf"\({SCHEMA_VERSION}\)"
    )
    with pytest.raises(Exception, match=newer):
        run_etl([day], settings, RunOptions(warehouse=str(location)))

    assert DuckDBWarehouse(location).fetch("SELECT count(*) FROM sales") == [(0,)]
