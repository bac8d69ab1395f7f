"""KPI anomaly checks on real warehouses (DuckDB files, the local PostgreSQL), loaded without
Prefect: an injected spike and drop are found, 60 normal generated days stay quiet, a day
without history is not judged, a re-check replaces rather than adds, and both warehouses store
the same anomalies for the same input."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from salesflow import stages
from salesflow.anomalies import (
    ALL_REGIONS,
    KPI_QUERY_DAYS,
    SALES_KPIS_SQL,
    AnomalyRules,
    check_days,
    detect,
    find_anomalies,
    kpi_series,
)
from salesflow.config import load_settings
from salesflow.rules import ValidationRules
from salesflow.sources.generator import generate_day, generate_sales
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from salesflow.warehouse.base import Warehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema

START = date(2024, 1, 1)
NORMAL_DAYS = 60
ROWS_PER_DAY = 3000
SEED = 42
SPIKE_DAY = START + timedelta(days=49)
DROP_DAY = START + timedelta(days=52)
STORED = (
    "SELECT order_date, region, kpi, value, median, mad, robust_z, direction, window_days, "
    "flow_run_id FROM anomalies ORDER BY order_date, region, kpi"
)


def stored(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    """The `anomalies` table without detected_at, floats to 9 significant digits."""
    return [
        tuple(float(f"{value:.9g}") if isinstance(value, float) else value for value in row)
        for row in warehouse.fetch(STORED)
    ]


def load(warehouse: Warehouse, source: Path, staging: Path) -> None:
    """extract -> validate (and transform) -> load, as the flow does it, without Prefect."""
    manifest = stages.extract(source, staging, None, force=True)
    manifest = stages.validate(manifest, ValidationRules(), TicketBands())
    warehouse.load_batch(manifest, "test-run")


def spiked(day: date, rows: int, region: str, factor: int) -> pl.DataFrame:
    """A normal generated day with one region's quantities multiplied."""
    quantity = pl.col("quantity").cast(pl.Int64)
    return generate_day(day, rows, SEED).with_columns(
        pl.when(pl.col("region") == region)
        .then(quantity * factor)
        .otherwise(quantity)
        .cast(pl.String)
        .alias("quantity")
    )


def dropped(day: date, rows: int, region: str, keep_every: int) -> pl.DataFrame:
    """A normal generated day keeping one order in `keep_every` of one region (whole orders)."""
    frame = generate_day(day, rows, SEED)
    orders = frame.filter(pl.col("region") == region)["order_id"].unique(maintain_order=True)
    kept = orders.gather_every(keep_every)
    return frame.filter((pl.col("region") != region) | pl.col("order_id").is_in(kept.to_list()))


def day_file(folder: Path, day: date) -> Path:
    """Where the generator writes a day: replacing it replaces that batch in the warehouse."""
    return folder / f"sales_{day.isoformat()}.csv"


def found_keys(found: list[Any]) -> set[tuple[date, str, str, str]]:
    return {(a.order_date, a.region, a.kpi, a.direction) for a in found}


@pytest.fixture(scope="module")
def normal_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """60 normal generated days loaded into a DuckDB file: (the file, the landing folder)."""
    root = tmp_path_factory.mktemp("normal")
    landing = root / "landing"
    files = generate_sales(landing, START, NORMAL_DAYS, ROWS_PER_DAY, seed=SEED, dirty_ratio=0)
    warehouse = DuckDBWarehouse(root / "warehouse.duckdb")
    for source in files:
        load(warehouse, source, root / "staging")
    return warehouse.path, landing


@pytest.fixture
def warehouse_copy(normal_warehouse: tuple[Path, Path], tmp_path: Path) -> DuckDBWarehouse:
    """A private copy of the 60 normal days, for a test to change."""
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(normal_warehouse[0], target)
    return DuckDBWarehouse(target)


def all_days() -> list[date]:
    return [START + timedelta(days=offset) for offset in range(NORMAL_DAYS)]


def test_sales_kpis_read_a_week_at_a_time_add_up_to_one_query_over_the_range(
    normal_warehouse: tuple[Path, Path],
) -> None:
    warehouse = DuckDBWarehouse(normal_warehouse[0])
    first, last = START - timedelta(days=3), all_days()[-1]  # not a whole number of weeks
    assert (last - first).days + 1 > 2 * KPI_QUERY_DAYS

    series = kpi_series(warehouse, first, last)

    whole = warehouse.fetch(SALES_KPIS_SQL, [first, last])
    assert len(whole) == NORMAL_DAYS * 5
    by_kpi = {
        (row["order_date"], row["region"], row["kpi"]): row["value"]
        for row in series.iter_rows(named=True)
    }
    for order_date, region, revenue, orders in whole:
        assert by_kpi[(order_date, region, "net_revenue")] == pytest.approx(revenue)
        assert by_kpi[(order_date, region, "orders")] == orders


def test_60_normal_days_raise_no_anomaly_though_the_checks_ran(
    normal_warehouse: tuple[Path, Path],
) -> None:
    warehouse = DuckDBWarehouse(normal_warehouse[0])
    rules = AnomalyRules()

    assert find_anomalies(warehouse, all_days(), rules) == []
    # A negative threshold flags every check that ran: days 22..60 have the 21 days of
    # history the default asks for, 5 regions x 3 KPIs each (the reject rate is 0 every day:
    # its MAD is 0, so it is never judged).
    series = kpi_series(warehouse, START, all_days()[-1])
    checked = detect(series, all_days(), AnomalyRules(z_threshold=-1))
    assert checked.height == (NORMAL_DAYS - 21) * 5 * 3
    assert checked["order_date"].min() == START + timedelta(days=21)
    assert set(checked["kpi"]) == {"net_revenue", "orders", "avg_order_value"}
    zero_rejects = series.filter(pl.col("kpi") == "reject_rate")
    assert zero_rejects.height == NORMAL_DAYS and zero_rejects["value"].max() == 0


def test_an_injected_spike_and_drop_are_found_and_stored(
    warehouse_copy: DuckDBWarehouse, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    spiked(SPIKE_DAY, ROWS_PER_DAY, "North", 3).write_csv(day_file(landing, SPIKE_DAY))
    dropped(DROP_DAY, ROWS_PER_DAY, "South", 7).write_csv(day_file(landing, DROP_DAY))
    for day in (SPIKE_DAY, DROP_DAY):
        load(warehouse_copy, day_file(landing, day), tmp_path / "staging")

    found = check_days(warehouse_copy, [SPIKE_DAY, DROP_DAY], AnomalyRules(), "run-1")

    assert found_keys(found) == {
        (SPIKE_DAY, "North", "net_revenue", "spike"),
        (SPIKE_DAY, "North", "avg_order_value", "spike"),
        (DROP_DAY, "South", "orders", "drop"),
        (DROP_DAY, "South", "net_revenue", "drop"),
    }
    revenue = next(a for a in found if a.kpi == "net_revenue" and a.region == "North")
    assert 2.5 < revenue.value / revenue.median < 3.5
    assert revenue.robust_z == pytest.approx(
        (revenue.value - revenue.median) / (1.4826 * revenue.mad)
    )
    assert revenue.robust_z > 5 and revenue.window_days == 28
    rows = stored(warehouse_copy)
    assert [(row[0], row[1], row[2], row[7]) for row in rows] == sorted(
        (a.order_date, a.region, a.kpi, a.direction) for a in found
    )
    assert {row[9] for row in rows} == {"run-1"}


def test_rechecking_replaces_the_days_anomalies(
    warehouse_copy: DuckDBWarehouse, tmp_path: Path, normal_warehouse: tuple[Path, Path]
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    spiked(SPIKE_DAY, ROWS_PER_DAY, "North", 3).write_csv(day_file(landing, SPIKE_DAY))
    load(warehouse_copy, day_file(landing, SPIKE_DAY), tmp_path / "staging")
    rules = AnomalyRules()

    check_days(warehouse_copy, [SPIKE_DAY], rules, "run-1")
    first = stored(warehouse_copy)
    check_days(warehouse_copy, [SPIKE_DAY], rules, "run-1")
    again = stored(warehouse_copy)
    # The normal file back: the day is no longer strange and its anomalies go.
    load(warehouse_copy, day_file(normal_warehouse[1], SPIKE_DAY), tmp_path / "staging")
    check_days(warehouse_copy, [SPIKE_DAY], rules, "run-2")

    assert len(first) == 2
    assert again == first
    assert warehouse_copy.fetch("SELECT count(*) FROM anomalies") == [(0,)]


def test_days_without_enough_history_are_not_judged(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    files = generate_sales(tmp_path / "landing", START, 3, 300, seed=SEED)
    for source in files:
        load(warehouse, source, tmp_path / "staging")
    # Day 3 far off its two days of history: still too little history to judge it.
    spiked(START + timedelta(days=2), 300, "North", 20).write_csv(files[2])
    load(warehouse, files[2], tmp_path / "staging")
    days = [START + timedelta(days=offset) for offset in range(3)]

    assert check_days(warehouse, days, AnomalyRules()) == []
    assert check_days(warehouse, [], AnomalyRules()) == []
    assert warehouse.fetch("SELECT count(*) FROM anomalies") == [(0,)]
    # With the history requirement lowered to 2 days the same spike is judged and found.
    found = check_days(warehouse, days, AnomalyRules(min_history_days=2))
    assert (days[2], "North", "net_revenue", "spike") in found_keys(found)


def series_of(rows: list[tuple[date, str, str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"order_date": pl.Date, "region": pl.String, "kpi": pl.String, "value": pl.Float64},
        orient="row",
    )


def test_a_flat_history_is_not_judged_and_the_window_excludes_the_day_and_older_days() -> None:
    days = [START + timedelta(days=offset) for offset in range(40)]
    flat = [(day, ALL_REGIONS, "reject_rate", 0.0) for day in days[:-1]]
    flat.append((days[-1], ALL_REGIONS, "reject_rate", 0.4))
    rules = AnomalyRules(window_days=10, min_history_days=5, z_threshold=3)

    assert detect(series_of(flat), [days[-1]], rules).height == 0  # MAD 0: no scale, no verdict

    # Days 0..28 wild, days 29..38 alternate 110/100, day 39 at 130: only the 10 days before
    # it count, so 130 is far from their median 105 with MAD 5: z = 25 / (1.4826 * 5).
    values = [1000.0 * (offset % 3) for offset in range(29)]
    values += [100.0 if offset % 2 else 110.0 for offset in range(10)] + [130.0]
    series = series_of(
        [(day, "North", "orders", value) for day, value in zip(days, values, strict=True)]
    )
    found = detect(series, [days[-1]], rules)

    assert found.select("median", "mad", "history_days", "direction").rows() == [
        (105.0, 5.0, 10, "spike")
    ]
    assert found["robust_z"][0] == pytest.approx(25 / (1.4826 * 5))


def test_reject_rate_goes_to_the_date_holding_most_of_the_batch(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    source = write_csv(
        tmp_path / "landing" / "mixed.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C1,S2,Mug,Home,1,3.25,South",
        "O3,2024-03-01T12:00:00,C2,S3,Lamp,Home,1,40,South",
        "O4,2024-03-02T09:00:00,C2,S3,Lamp,Home,3,40,South",
        "O5,2024-03-02T09:30:00,C2,S3,Lamp,Home,0,40,South",
    )
    load(warehouse, source, tmp_path / "staging")

    series = kpi_series(warehouse, date(2024, 3, 1), date(2024, 3, 2))

    assert series.filter(pl.col("kpi") == "reject_rate").rows() == [
        (date(2024, 3, 1), ALL_REGIONS, "reject_rate", 0.2)
    ]
    # North sold nothing on 2024-03-02: 0 revenue and orders, no average order value.
    north = series.filter(
        (pl.col("region") == "North") & (pl.col("order_date") == date(2024, 3, 2))
    )
    assert sorted(north.rows(), key=lambda row: row[2]) == [
        (date(2024, 3, 2), "North", "avg_order_value", None),
        (date(2024, 3, 2), "North", "net_revenue", 0.0),
        (date(2024, 3, 2), "North", "orders", 0.0),
    ]


@pytest.fixture
def postgres_warehouse() -> Iterator[PostgresWarehouse]:
    with fresh_postgres_database() as database, fresh_schema(database) as url:
        yield PostgresWarehouse(url)


def test_postgresql_stores_the_same_anomalies_as_duckdb(
    postgres_warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    days = 24
    rows = 800
    landing = tmp_path / "landing"
    files = generate_sales(landing, START, days, rows, seed=SEED)
    spike_day, drop_day = START + timedelta(days=23), START + timedelta(days=22)
    spiked(spike_day, rows, "North", 4).write_csv(day_file(landing, spike_day))
    dropped(drop_day, rows, "South", 7).write_csv(day_file(landing, drop_day))
    duck = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    checked = [drop_day, spike_day]
    when = datetime(2024, 2, 1, tzinfo=UTC)
    tables = {}
    for warehouse in (duck, postgres_warehouse):
        for source in files:
            load(warehouse, source, tmp_path / "staging")
        found = check_days(warehouse, checked, AnomalyRules(), "run-1")
        assert found_keys(found) >= {
            (spike_day, "North", "net_revenue", "spike"),
            (drop_day, "South", "orders", "drop"),
        }
        tables[type(warehouse).__name__] = stored(warehouse)
        assert warehouse.fetch("SELECT count(*) FROM anomalies WHERE detected_at > ?", [when]) == [
            (len(found),)
        ]

    assert tables["PostgresWarehouse"] == tables["DuckDBWarehouse"]
    assert (
        kpi_series(duck, START, spike_day)
        .sort(pl.all())
        .equals(kpi_series(postgres_warehouse, START, spike_day).sort(pl.all()))
    )


def test_settings_refuse_a_history_longer_than_the_window() -> None:
    from salesflow.errors import UsageError

    assert load_settings().anomaly_z_threshold == 5.0
    with pytest.raises(UsageError, match="anomaly_min_history_days"):
        load_settings(anomaly_window_days=7, anomaly_min_history_days=14)
