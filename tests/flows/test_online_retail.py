"""The real UCI Online Retail file through the whole flow with the `online-retail` profile,
checked against plain DuckDB queries over the raw CSV that share no code with salesflow."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from salesflow.config import load_settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.run_summary import RunSummary
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

ONLINE_RETAIL = REPO / ".." / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
ROWS = 541_909

# The raw file as DuckDB reads it, numbered like salesflow's source_row, and the rows the
# contract must reject, computed here without salesflow: negative prices (the two `A` bad-debt
# adjustments) and the second and later copies of an identical row.
RAW_SQL = """
CREATE TABLE raw AS
SELECT row_number() OVER () AS source_row, *
FROM read_csv(?, all_varchar = true, header = true);
CREATE TABLE expected_rejects AS
SELECT source_row, 'negative_price' AS reason FROM raw WHERE CAST(UnitPrice AS DECIMAL(18, 4)) < 0
UNION ALL
SELECT source_row, 'duplicate' FROM (
    SELECT source_row, row_number() OVER (
        PARTITION BY InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
                     CustomerID, Country
        ORDER BY source_row) AS copy
    FROM raw)
WHERE copy > 1;
CREATE VIEW kept AS
SELECT * FROM raw WHERE source_row NOT IN (SELECT source_row FROM expected_rejects);
"""


@pytest.fixture(scope="module")
def loaded(
    prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunSummary, duckdb.DuckDBPyConnection]]:
    """One run of the whole file (about half a minute), and a connection holding the raw CSV
    with the warehouse attached read-only."""
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"UCI Online Retail file not found at {ONLINE_RETAIL.resolve()}")
    work = tmp_path_factory.mktemp("online_retail")
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("SALESFLOW_")]:
            patch.delenv(name)
        patch.chdir(work)
        settings = load_settings(data_dir=work / "data", retry_delay_seconds=0, max_workers=2)
        summary = run_etl([ONLINE_RETAIL], settings, RunOptions(profile="online-retail"))
    con = duckdb.connect()
    for statement in RAW_SQL.split(";"):
        if statement.strip():
            parameters = [str(ONLINE_RETAIL)] if "read_csv" in statement else []
            con.execute(statement, parameters)
    con.execute(f"ATTACH '{summary.warehouse}' AS warehouse (READ_ONLY)")
    yield summary, con
    con.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_the_whole_file_loads_as_one_batch_within_the_reject_limit(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    summary, con = loaded
    [outcome] = summary.outcomes

    assert outcome.status == BatchStatus.LOADED, outcome.error
    assert outcome.rows_in == ROWS
    assert outcome.rows_loaded + outcome.rows_rejected == ROWS
    assert outcome.rows_rejected == scalar(con, "SELECT count(*) FROM expected_rejects")
    assert outcome.rows_rejected / ROWS < 0.05


def test_every_source_row_lands_exactly_once(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    _, con = loaded

    landed = con.execute(
        "SELECT count(*), count(DISTINCT source_row), min(source_row), max(source_row) FROM ("
        "SELECT source_row FROM warehouse.sales "
        "UNION ALL SELECT source_row FROM warehouse.sales_rejected)"
    ).fetchone()

    assert landed == (ROWS, ROWS, 1, ROWS)


def test_rejected_rows_are_exactly_the_negative_prices_and_repeated_copies(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    summary, con = loaded

    by_reason = con.execute(
        "SELECT reason, count(*) FROM expected_rejects GROUP BY ALL ORDER BY 1"
    ).fetchall()
    unexplained = con.execute(
        "SELECT source_row, reason FROM ("
        "SELECT source_row, unnest(reasons) AS reason FROM warehouse.sales_rejected) "
        "EXCEPT SELECT source_row, reason FROM expected_rejects "
        "UNION ALL (SELECT source_row, reason FROM expected_rejects EXCEPT "
        "SELECT source_row, unnest(reasons) FROM warehouse.sales_rejected)"
    ).fetchall()

    assert by_reason == [("duplicate", 5_268), ("negative_price", 2)]
    assert summary.outcomes[0].reason_counts == dict(by_reason)
    assert unexplained == []


def test_money_in_sales_equals_the_raw_file_minus_the_rejected_rows(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    summary, con = loaded

    raw_total = scalar(
        con,
        "SELECT sum(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS DECIMAL(18, 4))) FROM kept",
    )
    loaded_total = scalar(con, "SELECT sum(total) FROM warehouse.sales")

    assert raw_total == loaded_total == summary.outcomes[0].amount_loaded
    assert raw_total == Decimal("9748131.0740")  # 3-decimal prices kept exact


def test_cancellations_load_as_returns_and_odd_prices_stay_exact(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    _, con = loaded

    cancellations = con.execute(
        "SELECT count(*), count(*) FILTER (quantity < 0 AND ticket_size = 'return') "
        "FROM warehouse.sales WHERE order_id LIKE 'C%'"
    ).fetchone()
    expected_cancellations = scalar(con, "SELECT count(*) FROM kept WHERE InvoiceNo LIKE 'C%'")
    zero_prices = scalar(con, "SELECT count(*) FROM warehouse.sales WHERE unit_price = 0")
    tenth_of_a_penny = scalar(con, "SELECT count(*) FROM warehouse.sales WHERE unit_price = 0.001")

    assert cancellations == (expected_cancellations, expected_cancellations)
    assert expected_cancellations == 9_288 - scalar(
        con,
        "SELECT count(*) FROM expected_rejects JOIN raw USING (source_row) "
        "WHERE InvoiceNo LIKE 'C%'",
    )
    assert zero_prices == scalar(
        con, "SELECT count(*) FROM kept WHERE CAST(UnitPrice AS DECIMAL(18, 4)) = 0"
    )
    assert tenth_of_a_penny == 4


def test_timestamps_stay_in_london_time(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    _, con = loaded

    span = con.execute("SELECT min(order_ts), max(order_ts) FROM warehouse.sales").fetchone()

    assert span == (datetime(2010, 12, 1, 8, 26), datetime(2011, 12, 9, 12, 50))


def test_one_days_revenue_for_one_country_matches_the_raw_file(
    loaded: tuple[RunSummary, duckdb.DuckDBPyConnection],
) -> None:
    _, con = loaded

    mart = con.execute(
        "SELECT sum(net_revenue), sum(units) FROM warehouse.daily_sales "
        "WHERE order_date = DATE '2011-11-14' AND region = 'United Kingdom'"
    ).fetchone()
    raw = con.execute(
        "SELECT sum(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS DECIMAL(18, 4))), "
        "sum(CAST(Quantity AS BIGINT)) FROM kept "
        "WHERE CAST(InvoiceDate AS TIMESTAMP)::DATE = ? AND Country = 'United Kingdom'",
        [date(2011, 11, 14)],
    ).fetchone()

    assert mart == raw
    assert raw is not None and raw[0] > 0
