"""`salesflow report`: write the HTML report of the warehouse."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from salesflow.cli.console import WarehouseOption, console, iso_date, user_errors
from salesflow.config import load_settings


def report(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write. Default: <data_dir>/report.html."),
    ] = None,
    start: Annotated[
        date | None,
        typer.Option(
            help="First order date, YYYY-MM-DD.", metavar="DATE", parser=iso_date("--start")
        ),
    ] = None,
    end: Annotated[
        date | None,
        typer.Option(help="Last order date, YYYY-MM-DD.", metavar="DATE", parser=iso_date("--end")),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write one self-contained HTML report with charts of the warehouse, for a browser.

    Daily net revenue with returns, revenue by region and category, ticket sizes, weekdays,
    rows loaded vs rejected, reject reasons and KPI anomalies; it works offline (no CDN).
    """
    from salesflow.report import write_report
    from salesflow.warehouse import open_warehouse

    with user_errors():
        settings = load_settings(warehouse=warehouse)
        written = write_report(
            open_warehouse(settings.warehouse_location),
            out if out is not None else settings.data_dir / "report.html",
            start,
            end,
        )
    console.print(f"wrote report {written}", soft_wrap=True, highlight=False)
