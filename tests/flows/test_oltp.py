"""The shop's PostgreSQL database as a source, on the local PostgreSQL: after every load the
warehouse holds exactly what a direct query of the source returns, through updates, inserts,
deletes, moved orders, late commits and a connection dropped mid-extract."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from salesflow.config import Settings
from salesflow.errors import UsageError
from salesflow.flows.oltp import run_oltp
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.pg_url import PostgresUrl
from salesflow.run_summary import RunSummary
from salesflow.sources.postgres import EXTRACT_APPLICATION, PostgresSource
from salesflow.sources.shop import generated_sales, init_shop, seed_shop
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse, open_warehouse
from salesflow.warehouse.base import Warehouse
from tests.flows.test_etl import read_task_runs, stage_name
from tests.prefect_server import fresh_postgres_database, fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

START = date(2024, 5, 1)

# The source's order lines as the warehouse must hold them, day by day in extract order.
SOURCE_LINES = """
SELECT o.order_id, o.ordered_at, o.customer_id, i.sku, p.name, p.category, i.quantity,
       i.unit_price, o.region
FROM {s}.orders o JOIN {s}.order_items i USING (order_id) JOIN {s}.products p USING (sku)
ORDER BY o.ordered_at::date, o.order_id, i.line_no
"""
WAREHOUSE_LINES = (
    "SELECT order_id, order_ts, customer_id, sku, product, category, quantity, unit_price, "
    "region FROM sales ORDER BY batch_id, source_row"
)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def shop(database: str) -> Iterator[str]:
    """A shop schema of its own (its URL), seeded with 3 days of 40 clean lines each."""
    with fresh_schema(database, "shop") as url:
        init_shop(PostgresUrl.parse(url, "shop"))
        seed_shop(PostgresUrl.parse(url, "shop"), generated_sales(START, 3, 40, seed=11))
        yield url


def execute(shop: str, statement: str, params: Any = None) -> None:
    """Change the source as the shop's application would (its triggers keep updated_at)."""
    url = PostgresUrl.parse(shop, "shop")
    with psycopg.connect(url.conninfo, autocommit=True) as con:
        con.execute(sql.SQL(statement).format(s=sql.Identifier(url.schema)), params)


def source_lines(shop: str) -> list[tuple[Any, ...]]:
    url = PostgresUrl.parse(shop, "shop")
    with psycopg.connect(url.conninfo) as con:
        query = sql.SQL(SOURCE_LINES).format(s=sql.Identifier(url.schema))
        return [tuple(row) for row in con.execute(query).fetchall()]


def assert_warehouse_equals_source(warehouse: Warehouse, shop: str) -> None:
    held = [tuple(row) for row in warehouse.fetch(WAREHOUSE_LINES)]
    expected = source_lines(shop)
    assert len(held) == len(expected)
    assert held == expected


def statuses(summary: RunSummary) -> dict[str, str]:
    return {outcome.batch_id: str(outcome.status) for outcome in summary.outcomes}


def day_batch(shop: str, day: date) -> str:
    return PostgresSource(shop).batch_name(day)


def test_initial_load_then_updates_inserts_deletes_and_moves_keep_the_warehouse_equal_to_source(
    shop: str, settings: Settings, tmp_path: Path
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    first = run_oltp(shop, settings, RunOptions(warehouse=warehouse))
    store = DuckDBWarehouse(warehouse)

    assert statuses(first) == {day_batch(shop, START + timedelta(n)): "loaded" for n in range(3)}
    assert first.rows_loaded == 120 and first.rows_rejected == 0
    assert_warehouse_equals_source(store, shop)
    assert store.read_watermark(PostgresSource(shop).location) is not None

    # Day 1: a line's quantity changes and another line is deleted; an order moves from day 2
    # (nothing else changes there) to day 3, which also gets a new order; a new day 4 opens.
    execute(
        shop,
        "UPDATE {s}.order_items SET quantity = quantity + 5 "
        "WHERE order_id = (SELECT min(order_id) FROM {s}.orders) AND line_no = 1",
    )
    execute(
        shop,
        "DELETE FROM {s}.order_items WHERE (order_id, line_no) = (SELECT order_id, max(line_no) "
        "FROM {s}.order_items WHERE order_id LIKE 'O20240501-%' GROUP BY order_id "
        "HAVING count(*) > 1 ORDER BY order_id LIMIT 1)",
    )
    execute(
        shop,
        "UPDATE {s}.orders SET ordered_at = ordered_at + interval '1 day' "
        "WHERE order_id = 'O20240502-000005'",
    )
    for order_id, when in (("NEW-3", "2024-05-03 12:00"), ("NEW-4", "2024-05-04 09:30")):
        execute(shop, "INSERT INTO {s}.orders VALUES (%s, NULL, 'North', %s)", [order_id, when])
        execute(
            shop,
            "INSERT INTO {s}.order_items (order_id, line_no, sku, quantity, unit_price) "
            "SELECT %s, 1, min(sku), 3, 19.99 FROM {s}.products",
            [order_id],
        )
    # Deleted whole: one order of day 2, and every order of day 1 but the first.
    execute(shop, "DELETE FROM {s}.orders WHERE order_id = 'O20240502-000007'")
    execute(
        shop,
        "DELETE FROM {s}.orders WHERE ordered_at < '2024-05-02' "
        "AND order_id <> (SELECT min(order_id) FROM {s}.orders)",
    )
    assert source_lines(shop)  # day 1 keeps its first order

    second = run_oltp(shop, settings, RunOptions(warehouse=warehouse))

    assert [o.status for o in second.outcomes] == [BatchStatus.LOADED] * 4
    assert_warehouse_equals_source(store, shop)

    # Day 3 loses every order: its batch is replaced by an empty one, by tombstones alone.
    execute(shop, "DELETE FROM {s}.orders WHERE ordered_at::date = '2024-05-03'")
    third = run_oltp(shop, settings, RunOptions(warehouse=warehouse))

    assert statuses(third)[day_batch(shop, date(2024, 5, 3))] == "loaded"
    assert_warehouse_equals_source(store, shop)
    assert store.fetch("SELECT count(*) FROM sales WHERE order_date = DATE '2024-05-03'") == [(0,)]
    assert store.fetch("SELECT count(DISTINCT batch_id) FROM batches") == [(4,)]
    assert store.fetch(
        "SELECT sum(amount_loaded) FROM batches WHERE status IN ('loaded', 'skipped')"
    ) == store.fetch("SELECT sum(total) FROM sales")


def test_a_rerun_with_nothing_changed_skips_every_day_and_leaves_the_warehouse_identical(
    shop: str, settings: Settings, tmp_path: Path
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    run_oltp(shop, settings, RunOptions(warehouse=warehouse))
    store = DuckDBWarehouse(warehouse)
    before = {table: store.table_checksum(table) for table in ("sales", "daily_sales")}

    # Every change lies inside the lag window.
    again = run_oltp(shop, settings, RunOptions(warehouse=warehouse))

    assert {o.status for o in again.outcomes} == {BatchStatus.SKIPPED}
    assert {table: store.table_checksum(table) for table in before} == before


def test_a_late_commit_inside_the_lag_window_is_loaded_and_one_outside_it_only_by_refresh(
    shop: str, settings: Settings, tmp_path: Path
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    lagged = settings.model_copy(update={"oltp_lag_minutes": 10.0})
    run_oltp(shop, lagged, RunOptions(warehouse=warehouse))
    store = DuckDBWarehouse(warehouse)
    watermark = store.read_watermark(PostgresSource(shop).location)
    assert isinstance(watermark, datetime)
    # Push the source's own changes out of the window, as if the load ran an hour later...
    for table in ("orders", "order_items", "products"):
        execute(shop, f"ALTER TABLE {{s}}.{table} DISABLE TRIGGER USER")
        execute(shop, f"UPDATE {{s}}.{table} SET updated_at = updated_at - interval '2 hours'")
    store.save_watermark(PostgresSource(shop).location, watermark - timedelta(hours=1))
    late = watermark - timedelta(hours=1, minutes=4)  # committed late: inside the 10 minutes
    too_late = watermark - timedelta(hours=1, minutes=30)  # outside them
    for order_id, day, changed in (("LATE", "2024-05-02", late), ("LOST", "2024-05-03", too_late)):
        execute(
            shop,
            "INSERT INTO {s}.orders VALUES (%s, NULL, 'South', %s, %s)",
            [order_id, f"{day} 08:00", changed],
        )
        execute(
            shop,
            "INSERT INTO {s}.order_items VALUES (%s, 1, (SELECT min(sku) FROM {s}.products), "
            "2, 5.00, %s)",
            [order_id, changed],
        )

    incremental = run_oltp(shop, lagged, RunOptions(warehouse=warehouse))

    assert statuses(incremental) == {day_batch(shop, date(2024, 5, 2)): "loaded"}
    held = {row[0] for row in store.fetch("SELECT order_id FROM sales")}
    assert "LATE" in held and "LOST" not in held

    refreshed = run_oltp(shop, lagged, RunOptions(warehouse=warehouse), full_refresh=True)

    assert statuses(refreshed)[day_batch(shop, date(2024, 5, 3))] == "loaded"
    assert_warehouse_equals_source(store, shop)


def test_a_connection_terminated_mid_extract_is_retried_and_the_load_completes(
    database: str, settings: Settings, tmp_path: Path
) -> None:
    with fresh_schema(database, "shop") as shop:
        init_shop(PostgresUrl.parse(shop, "shop"))
        seed_shop(PostgresUrl.parse(shop, "shop"), generated_sales(START, 1, 60_000, seed=3))
        killed: list[int] = []
        watcher = threading.Thread(target=_terminate_first_extract, args=(database, killed))
        watcher.start()
        try:
            summary = run_oltp(shop, settings, RunOptions(warehouse=str(tmp_path / "w.duckdb")))
        finally:
            watcher.join(timeout=120)
        held = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
        lines_match = [tuple(r) for r in held.fetch(WAREHOUSE_LINES)] == source_lines(shop)

    assert killed, "the extract's connection was never seen, so never terminated"
    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED]
    extracts = [run for run in read_task_runs(summary.flow_run_id) if "extract-day" in run.name]
    assert [stage_name(run) for run in extracts] == ["extract-day"]
    assert extracts[0].run_count == 2  # failed once on the dropped connection, then succeeded
    assert lines_match


def _terminate_first_extract(database: str, killed: list[int]) -> None:
    """Terminate the backend of the first extract connection as soon as it shows."""
    deadline = time.monotonic() + 120
    with psycopg.connect(database, autocommit=True) as con:
        while time.monotonic() < deadline:
            row = con.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                [EXTRACT_APPLICATION],
            ).fetchone()
            if row is not None:
                con.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                killed.append(row[0])
                return
            time.sleep(0.002)


def test_loads_into_a_postgres_warehouse_the_same_rows(
    shop: str, database: str, settings: Settings
) -> None:
    with fresh_schema(database, "wh") as url:
        warehouse = PostgresWarehouse(url)
        summary = run_oltp(shop, settings, RunOptions(warehouse=warehouse.location))
        assert summary.count(BatchStatus.LOADED) == 3
        assert_warehouse_equals_source(open_warehouse(warehouse.location), shop)
        assert warehouse.read_watermark(PostgresSource(shop).location) is not None


def test_a_schema_without_shop_tables_fails_with_one_line_naming_the_fix(
    database: str, settings: Settings, tmp_path: Path
) -> None:
    empty = f"{database}?schema=no_shop_here"
    with pytest.raises(UsageError, match=r"no_shop_here.*does not exist.*salesflow oltp init"):
        PostgresSource(empty).discover(None)


def test_an_unreachable_source_fails_the_run_after_its_retries_with_the_reason(
    settings: Settings, tmp_path: Path
) -> None:
    closed = "postgresql://postgres@127.0.0.1:1/shop?schema=shop"
    quick = settings.model_copy(update={"retries": 1})
    with pytest.raises(Exception, match="PostgreSQL unreachable") as caught:
        run_oltp(closed, quick, RunOptions(warehouse=str(tmp_path / "w.duckdb")))
    assert "password" not in str(caught.value)


# --- the commands --------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from salesflow.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_init_seed_from_a_file_and_load_through_the_commands(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from salesflow.sources.generator import generate_sales

    monkeypatch.setenv("SALESFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SALESFLOW_RETRY_DELAY_SECONDS", "0")
    day_file = generate_sales(tmp_path / "landing", START, 1, 25, seed=4)[0]
    with fresh_schema(database, "shop") as shop:
        monkeypatch.setenv("SALESFLOW_OLTP_URL", shop)
        assert invoke("oltp", "init")[0] == 0
        assert invoke("oltp", "init")[0] == 0  # safe to run again
        code, out, err = invoke("oltp", "seed", "--from", str(day_file))
        assert code == 0, err
        assert "25 order_items" in out
        code, out, err = invoke("oltp", "load", "--warehouse", str(tmp_path / "w.duckdb"))
        assert code == 0, err
        assert "1 loaded, 0 unchanged, 0 failed; rows in 25, loaded 25" in " ".join(out.split())
        code, out, _ = invoke("oltp", "load", "--warehouse", str(tmp_path / "w.duckdb"))
        assert code == 0 and "0 loaded, 1 unchanged" in " ".join(out.split())
        assert_warehouse_equals_source(DuckDBWarehouse(str(tmp_path / "w.duckdb")), shop)
        # The file's rows, as the shop now holds them, are the file's rows.
        file_rows = day_file.read_text().splitlines()[1:]
        assert len(source_lines(shop)) == len(file_rows) == 25


def test_the_commands_give_one_line_errors_for_bad_input(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = invoke("oltp", "load")
    assert (
        code == 2
        and err.strip() == "error: no shop database: pass --dsn postgresql://... or set oltp_url"
    )

    code, _, err = invoke("oltp", "init", "--dsn", "postgresql://me:hunter2@127.0.0.1/test")
    assert code == 2 and "keep the password out of the oltp_url" in err and "hunter2" not in err

    code, _, err = invoke("oltp", "init", "--dsn", f"{database}?schema=Bad-Name")
    assert code == 2 and "is not a plain name" in err and len(err.strip().splitlines()) == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,order_ts\nO1,2024-05-01T10:00:00\n")
    code, _, err = invoke("oltp", "seed", "--dsn", f"{database}?schema=s", "--from", str(bad))
    assert code == 2 and "missing column 'customer_id'" in err


def test_two_shops_with_the_same_schema_name_never_share_batches() -> None:
    one = PostgresSource("postgresql://app@db-one/shop?schema=shop")
    other = PostgresSource("postgresql://app@db-two/shop?schema=shop")
    longer = PostgresSource("postgresql://app@db-one/shop?schema=shop_eu")

    day = date(2024, 5, 1)
    assert one.batch_name(day) != other.batch_name(day)
    assert not longer.batch_name(day).startswith(one.batch_prefix)
    assert one.day_of(one.batch_name(day)) == day


def test_a_password_in_the_url_is_refused_in_any_form(tmp_path: Path) -> None:
    from salesflow.config import load_settings

    for url in (
        "postgresql://me:hunter2@127.0.0.1/test",
        "postgresql://me@127.0.0.1/test?password=hunter2",
        "postgresql://me@127.0.0.1/test?sslpassword=hunter2&schema=shop",
    ):
        for field in ("oltp_url", "warehouse"):
            with pytest.raises(UsageError, match="keep the password out") as caught:
                load_settings(**{field: url})
            assert "hunter2" not in str(caught.value)
