"""Quarantined rows read back with filters, and exported without spreadsheet formula injection."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from salesflow.errors import UsageError
from salesflow.quarantine import export_rejects, neutralise_formulas, read_rejects
from salesflow.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import fresh_postgres_database, fresh_schema, with_schema
from tests.warehouse.batches import staged


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


# --- the same rejects from a PostgreSQL warehouse ---------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this module, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def both(database: str, tmp_path: Path) -> Iterator[tuple[PostgresWarehouse, DuckDBWarehouse]]:
    """A PostgreSQL warehouse (its own schema, dropped after the test) and a DuckDB one, both
    loaded with the same files: rejects of two batches whose ids sort differently by case."""
    with fresh_schema(database) as url:
        yield _loaded_in_both(PostgresWarehouse(url), tmp_path)


def _loaded_in_both(
    postgres: PostgresWarehouse, tmp_path: Path
) -> tuple[PostgresWarehouse, DuckDBWarehouse]:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    landing = tmp_path / "landing"
    files = [
        write_csv(
            landing / "sales_a.csv",
            CANONICAL_HEADER,
            "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
            "O2,2024-03-01T11:00:00,C1,S2,Mug,Home,0,3.25,North",
            "O3,2024-03-01T12:00:00,C2,S3,=cmd(),Home,1,-4,",
        ),
        write_csv(
            landing / "Sales_b.csv",
            CANONICAL_HEADER,
            "O4,2024-03-02T09:00:00,C2,S3,Lamp,,0,40,South",
            "O5,2024-03-02T09:30:00,C2,S3,Lamp,,3,40,South",
        ),
    ]
    for target in (postgres, duck):
        for source in files:
            manifest = staged(source, tmp_path / type(target).__name__ / source.stem)
            target.load_batch(manifest, "run-1")
    return postgres, duck


def test_rejects_read_from_postgres_equal_those_from_duckdb(
    both: tuple[PostgresWarehouse, DuckDBWarehouse],
) -> None:
    postgres, duck = both

    rows = read_rejects(postgres)

    assert rows.equals(read_rejects(duck))
    assert rows.schema == pl.Schema(
        {
            "batch_id": pl.String,
            "source_row": pl.Int64,
            "reasons": pl.List(pl.String),
            "raw": pl.String,
        }
    )
    # Byte order of batch ids, as DuckDB sorts them, whatever PostgreSQL's collation.
    assert rows.select("batch_id", "source_row").rows() == [
        ("Sales_b.csv", 1),
        ("sales_a.csv", 2),
        ("sales_a.csv", 3),
    ]
    for batch, reason in [("sales_a.csv", None), (None, "zero_quantity"), ("Sales_b.csv", "x")]:
        filtered = read_rejects(postgres, batch=batch, reason=reason)
        assert filtered.equals(read_rejects(duck, batch=batch, reason=reason))
    assert read_rejects(postgres, reason="zero_quantity").get_column("source_row").to_list() == [
        1,
        2,
    ]


def test_rejects_exported_from_postgres_are_the_same_file_as_from_duckdb(
    both: tuple[PostgresWarehouse, DuckDBWarehouse], tmp_path: Path
) -> None:
    postgres, duck = both

    written = export_rejects(read_rejects(postgres.location), tmp_path / "pg.csv")
    export_rejects(read_rejects(duck.location), tmp_path / "duck.csv")

    assert written == 3
    exported = (tmp_path / "pg.csv").read_bytes()
    assert exported == (tmp_path / "duck.csv").read_bytes()
    with (tmp_path / "pg.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["batch_id"] for row in rows] == ["Sales_b.csv", "sales_a.csv", "sales_a.csv"]
    assert "missing_region" in rows[2]["reasons"].split("|")
    assert '"product":"=cmd()"' in rows[2]["raw"]


def test_rejects_of_a_postgres_schema_not_loaded_yet_is_a_usage_error(database: str) -> None:
    empty = PostgresWarehouse(with_schema(database, f"t_{uuid.uuid4().hex[:12]}"))  # never created

    with pytest.raises(UsageError, match="no warehouse yet"):
        read_rejects(empty)
