"""Quarantined rows read back with filters, and exported without spreadsheet formula injection."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import polars as pl
import pytest

from salesflow.errors import UsageError
from salesflow.quarantine import export_rejects, neutralise_formulas, read_rejects
from salesflow.warehouse import DuckDBWarehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    location = tmp_path / "wh.duckdb"
    DuckDBWarehouse(location).ensure_schema()
    with duckdb.connect(str(location)) as con:
        con.execute(
            "INSERT INTO sales_rejected VALUES "
            "('b.csv', 2, ['zero_quantity'], '{\"q\":\"0\"}'), "
            "('a.csv', 7, ['missing_region', 'duplicate'], '{\"region\":null}'), "
            "('a.csv', 3, ['duplicate'], '=HYPERLINK(\"http://evil\")')"
        )
    return location


def test_rejects_come_back_in_batch_and_row_order(warehouse: Path) -> None:
    rows = read_rejects(warehouse)

    assert rows.select("batch_id", "source_row").rows() == [
        ("a.csv", 3),
        ("a.csv", 7),
        ("b.csv", 2),
    ]


def test_rejects_filter_by_batch_and_by_reason(warehouse: Path) -> None:
    assert read_rejects(warehouse, batch="b.csv").get_column("source_row").to_list() == [2]
    by_reason = read_rejects(warehouse, reason="duplicate")
    assert by_reason.get_column("source_row").to_list() == [3, 7]
    both = read_rejects(warehouse, batch="a.csv", reason="missing_region")
    assert both.get_column("source_row").to_list() == [7]


def test_reading_rejects_without_a_warehouse_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no warehouse yet"):
        read_rejects(tmp_path / "none.duckdb")


@pytest.mark.parametrize(
    ("cell", "exported"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(cell: str, exported: str) -> None:
    frame = pl.DataFrame({"cell": [cell]})

    assert frame.select(neutralise_formulas(pl.col("cell"))).item() == exported


def test_export_writes_every_row_formula_safe(warehouse: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out" / "rejects.csv"

    written = export_rejects(read_rejects(warehouse), destination)

    assert written == 3
    with destination.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["reasons"] for row in rows] == [
        "duplicate",
        "missing_region|duplicate",
        "zero_quantity",
    ]
    assert rows[0]["raw"] == '\'=HYPERLINK("http://evil")'
    assert all(not row[key].startswith(("=", "+", "-", "@")) for row in rows for key in row)


def test_export_refuses_a_non_csv_name(warehouse: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"name the file \.csv"):
        export_rejects(read_rejects(warehouse), tmp_path / "rejects.xlsx")
