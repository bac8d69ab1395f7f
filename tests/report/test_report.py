"""The HTML report without a browser: date ranges, empty warehouses, one-line errors, no external
loads, escaped data, and the `salesflow report` command."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from salesflow.cli import app
from salesflow.errors import UsageError
from salesflow.report import CHARTS, write_report
from salesflow.warehouse import DuckDBWarehouse
from tests.report.conftest import FIRST_DAY

runner = CliRunner()

ANOMALY_COLUMNS = (
    "order_date, region, kpi, value, median, mad, robust_z, direction, window_days, detected_at, "
    "flow_run_id"
)
ANOMALIES_DDL = (  # as documented; the warehouse may already create it
    "CREATE TABLE IF NOT EXISTS anomalies (order_date DATE, region VARCHAR, kpi VARCHAR, "
    "value DOUBLE, median DOUBLE, mad DOUBLE, robust_z DOUBLE, direction VARCHAR, "
    "window_days INTEGER, detected_at TIMESTAMPTZ, flow_run_id VARCHAR)"
)
HOSTILE = "<script>alert(1)</script>"


def kpi(page: str, name: str) -> str:
    """The value shown under a header KPI."""
    found = re.search(rf"<dt>{name}</dt><dd>([^<]*)</dd>", page)
    assert found, f"no KPI {name!r} in the report"
    return found.group(1)


def with_anomalies(warehouse: DuckDBWarehouse, folder: Path) -> DuckDBWarehouse:
    """A copy of the warehouse with an `anomalies` table: one row in January whose region is
    markup, one in February."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "warehouse.duckdb"
    shutil.copyfile(warehouse.path, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(ANOMALIES_DDL)
        con.execute(
            f"INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES "
            "(DATE '2024-01-10', ?, 'net_revenue', 9000, 4000, 500, 6.75, 'spike', 28, "
            "TIMESTAMPTZ '2024-02-06 06:00:00+00', 'run-1'), "
            "(DATE '2024-02-02', 'North', 'orders', 3, 40, 5, -4.8, 'drop', 28, "
            "TIMESTAMPTZ '2024-02-06 06:00:00+00', 'run-1')",
            [HOSTILE],
        )
    return DuckDBWarehouse(copy)


def test_a_full_report_has_every_chart_and_the_totals_of_the_warehouse(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    written = write_report(loaded_warehouse, tmp_path / "out" / "report.html")

    page = written.read_text(encoding="utf-8")
    rows, rejected, revenue = loaded_warehouse.fetch(
        "SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM sales_rejected), "
        "(SELECT sum(total) FROM sales)"
    )[0]
    assert written == (tmp_path / "out" / "report.html").resolve()
    assert rejected > 0
    assert kpi(page, "Rows loaded") == f"{rows:,}"
    assert kpi(page, "Rows rejected") == f"{rejected:,}"
    assert kpi(page, "Net revenue") == f"{revenue:,.2f}"
    assert "Order dates 2024-01-01 to 2024-02-04" in page
    for chart_id, _ in CHARTS:
        assert f'<section class="chart" id="{chart_id}">' in page
        assert f'Plotly.newPlot(                        "{chart_id}-plot"' in page
    assert page.count("Plotly.newPlot(") == len(CHARTS)
    assert 'id="no-anomalies"' in page  # no anomalies table in this warehouse
    assert "No KPI anomalies" in page


def test_start_and_end_narrow_the_totals_to_that_range_inclusive(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    start, end = date(2024, 1, 8), date(2024, 1, 14)

    full = write_report(loaded_warehouse, tmp_path / "full.html").read_text(encoding="utf-8")
    week = write_report(loaded_warehouse, tmp_path / "week.html", start, end).read_text(
        encoding="utf-8"
    )

    rows, revenue = loaded_warehouse.fetch(
        "SELECT count(*), sum(total) FROM sales WHERE order_date BETWEEN ? AND ?", [start, end]
    )[0]
    (rejected,) = loaded_warehouse.fetch(
        "SELECT count(*) FROM sales_rejected WHERE batch_id IN "
        "(SELECT batch_id FROM sales WHERE order_date BETWEEN ? AND ?)",
        [start, end],
    )[0]
    assert kpi(week, "Rows loaded") == f"{rows:,}"
    assert kpi(week, "Net revenue") == f"{revenue:,.2f}"
    assert kpi(week, "Rows rejected") == f"{rejected:,}"
    assert int(kpi(week, "Rows loaded").replace(",", "")) < int(
        kpi(full, "Rows loaded").replace(",", "")
    )
    assert kpi(week, "Net revenue") != kpi(full, "Net revenue")
    assert "Order dates 2024-01-08 to 2024-01-14" in week
    # the daily chart's x values stay inside the range
    assert '"2024-01-08"' in week and '"2024-01-14"' in week
    assert '"2024-01-07"' not in week and '"2024-01-15"' not in week


def test_a_range_without_sales_gives_a_valid_report_that_says_so(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    page = write_report(
        loaded_warehouse, tmp_path / "r.html", date(2030, 1, 1), date(2030, 1, 31)
    ).read_text(encoding="utf-8")

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "No sales in this period" in page
    assert kpi(page, "Rows loaded") == "0"
    assert kpi(page, "Rows rejected") == "0"
    assert kpi(page, "Net revenue") == "0.00"
    assert "Order dates 2030-01-01 to 2030-01-31" in page
    assert "Plotly.newPlot(" not in page
    assert "No KPI anomalies" in page


def test_an_empty_warehouse_gives_a_valid_report_that_says_so(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "empty.duckdb")
    warehouse.ensure_schema()

    page = write_report(warehouse, tmp_path / "r.html").read_text(encoding="utf-8")

    assert "No sales in the warehouse yet" in page
    assert kpi(page, "Rows loaded") == "0"
    assert kpi(page, "Reject share") == "n/a"
    assert "Plotly.newPlot(" not in page


def test_a_missing_warehouse_is_a_one_line_usage_error_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "warehouse.duckdb"

    with pytest.raises(UsageError) as raised:
        write_report(DuckDBWarehouse(missing), tmp_path / "r.html")

    message = str(raised.value)
    assert message == f"{missing}: no warehouse yet; run `salesflow run` or `salesflow demo` first"
    assert "\n" not in message
    assert not missing.exists()
    assert not (tmp_path / "r.html").exists()


def test_start_after_end_is_a_usage_error(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--start 2024-02-01 is after --end 2024-01-01"):
        write_report(loaded_warehouse, tmp_path / "r.html", date(2024, 2, 1), date(2024, 1, 1))


def test_the_file_loads_nothing_from_outside(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    page = write_report(loaded_warehouse, tmp_path / "r.html").read_text(encoding="utf-8")
    # The markup without the inline scripts' code (plotly.min.js quotes URLs in strings, e.g.
    # its logo link, which `displaylogo: False` never draws).
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.S | re.I)

    assert not re.search(r"<script\b[^>]*\bsrc\s*=", page, re.I)  # the whole file
    assert not re.search(r"<link\b", page, re.I)
    tags = re.findall(r"<(?:script|link|img|iframe|object|embed|source|a)\b[^>]*>", markup, re.I)
    assert len(tags) == len(CHARTS) + 1  # plotly.min.js once, then one script per chart
    for tag in tags:
        assert not re.search(r"\b(?:src|href|data)\s*=", tag, re.I), tag
    assert not re.search(r"https?://", markup)
    assert not re.search(r"@import|url\(", markup, re.I)
    assert "default-src 'none'" in markup  # and the browser is told to refuse any fetch
    assert page.count("plotly.js v") == 1  # the library is inline, once


def test_anomalies_in_range_are_listed_with_data_text_escaped(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    warehouse = with_anomalies(loaded_warehouse, tmp_path / "wh")

    january = write_report(
        warehouse, tmp_path / "jan.html", FIRST_DAY, date(2024, 1, 31)
    ).read_text(encoding="utf-8")
    everything = write_report(warehouse, tmp_path / "all.html").read_text(encoding="utf-8")

    assert 'id="anomaly-table"' in january
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in january
    assert HOSTILE not in january
    assert "+6.75" in january and "2024-02-02" not in january
    assert everything.count("<tr><td>2024-") == 2
    assert '<td class="drop">drop</td>' in everything
    assert "No KPI anomalies" not in everything
    assert '"name":"KPI anomaly"' in everything  # markers on the daily revenue chart


def test_without_an_anomalies_table_the_report_says_no_anomalies(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    (tmp_path / "wh").mkdir()
    shutil.copyfile(loaded_warehouse.path, tmp_path / "wh" / "warehouse.duckdb")
    with duckdb.connect(str(tmp_path / "wh" / "warehouse.duckdb")) as con:
        con.execute("DROP TABLE IF EXISTS anomalies")

    page = write_report(DuckDBWarehouse(tmp_path / "wh" / "warehouse.duckdb"), tmp_path / "r.html")

    text = page.read_text(encoding="utf-8")
    assert '<p id="no-anomalies">No KPI anomalies in this period.</p>' in text
    assert 'id="anomaly-table"' not in text


def test_an_anomalies_table_without_rows_in_range_says_no_anomalies(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    warehouse = with_anomalies(loaded_warehouse, tmp_path / "wh")

    page = write_report(
        warehouse, tmp_path / "r.html", date(2024, 1, 20), date(2024, 1, 25)
    ).read_text(encoding="utf-8")

    assert "No KPI anomalies" in page
    assert 'id="anomaly-table"' not in page


def test_cli_report_writes_the_file_and_prints_its_path(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    out = tmp_path / "cli" / "week.html"

    result = runner.invoke(
        app,
        [
            "report",
            "--warehouse",
            loaded_warehouse.location,
            "--out",
            str(out),
            "--start",
            "2024-01-08",
            "--end",
            "2024-01-14",
        ],
    )

    assert result.exit_code == 0, result.stderr
    assert " ".join(result.stdout.split()) == f"wrote report {out.resolve()}"
    assert "Order dates 2024-01-08 to 2024-01-14" in out.read_text(encoding="utf-8")


def test_cli_report_defaults_to_the_data_dir(
    loaded_warehouse: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESFLOW_DATA_DIR", str(tmp_path / "datadir"))

    result = runner.invoke(app, ["report", "--warehouse", loaded_warehouse.location])

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "datadir" / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--start", "2024-13-01"], "error: --start '2024-13-01': expected a date as YYYY-MM-DD"),
        (["--warehouse", "{missing}"], "error: {missing}: no warehouse yet; run `salesflow run`"),
    ],
)
def test_cli_report_errors_are_one_line_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    missing = str(tmp_path / "missing.duckdb")
    args = [arg.format(missing=missing) for arg in args]
    if "--warehouse" not in args:
        args += ["--warehouse", missing]

    result = runner.invoke(app, ["report", "--out", str(tmp_path / "r.html"), *args])

    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(expected.format(missing=missing))
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "r.html").exists()
