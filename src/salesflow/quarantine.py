"""Quarantined rows: read them back with filters and export them safely for a spreadsheet.

Exported cells that a spreadsheet would run as a formula are neutralised with a leading quote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl

from salesflow.errors import UsageError
from salesflow.warehouse import DATABASE_ERRORS, open_warehouse
from salesflow.warehouse.base import Warehouse, error_line

# A cell starting with one of these is taken as a formula by Excel, LibreOffice and Sheets.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")

# The frame's shape whatever the warehouse: DuckDB and PostgreSQL hand back the same values.
REJECTS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "batch_id": pl.String(),
    "source_row": pl.Int64(),
    "reasons": pl.List(pl.String()),
    "raw": pl.String(),
}


def read_rejects(
    warehouse: Warehouse | str | Path, batch: str | None = None, reason: str | None = None
) -> pl.DataFrame:
    """Rejected rows, optionally of one batch and/or carrying one reason, in source order
    (batch ids in byte order on both warehouses, whatever the database's collation)."""
    if isinstance(warehouse, str | Path):
        warehouse = open_warehouse(str(warehouse))
    if not warehouse.holds_data():
        raise UsageError(
            f"{warehouse.location}: no warehouse yet; run `salesflow run` or `salesflow demo` first"
        )
    conditions = ["TRUE"]
    params: list[str] = []
    if batch is not None:
        conditions.append("batch_id = ?")
        params.append(batch)
    if reason is not None:
        conditions.append("list_contains(reasons, ?)")
        params.append(reason)
    try:
        rows = warehouse.fetch(
            "SELECT batch_id, source_row, reasons, raw FROM sales_rejected "
            f'WHERE {" AND ".join(conditions)} ORDER BY batch_id COLLATE "C", source_row',
            params,
        )
    except DATABASE_ERRORS as error:
        raise UsageError(
            f"{warehouse.location}: cannot read rejects ({error_line(error)})"
        ) from None
    return pl.DataFrame(rows, schema=REJECTS_SCHEMA, orient="row")


def neutralise_formulas(text: pl.Expr) -> pl.Expr:
    """Prefix a quote to cells a spreadsheet would evaluate as a formula."""
    starts_formula = pl.any_horizontal([text.str.starts_with(start) for start in FORMULA_STARTS])
    return pl.when(starts_formula).then(pl.lit("'") + text).otherwise(text)


def export_rejects(rows: pl.DataFrame, destination: Path) -> int:
    """Write rejected rows to CSV (reasons joined by '|'), formula-safe; returns rows written."""
    if destination.suffix.lower() != ".csv":
        raise UsageError(f"{destination}: export writes CSV; name the file .csv")
    safe = rows.select(
        neutralise_formulas(pl.col("batch_id")).alias("batch_id"),
        pl.col("source_row"),
        neutralise_formulas(pl.col("reasons").list.join("|")).alias("reasons"),
        neutralise_formulas(pl.col("raw")).alias("raw"),
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    safe.write_csv(destination)
    return safe.height
