"""Write the report: check the request, read the warehouse, build the figures, save the page.

Database errors while reading become one-line `UsageError`s naming the warehouse, so a report of
a half-built or foreign warehouse fails the way a user can act on.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import salesflow.report.queries as queries
from salesflow.errors import UsageError
from salesflow.report.figures import CHART_SECTIONS
from salesflow.report.queries import Scope
from salesflow.report.template import page
from salesflow.warehouse import DATABASE_ERRORS
from salesflow.warehouse.base import Warehouse, error_line


def write_report(
    warehouse: Warehouse, out: Path, start: date | None = None, end: date | None = None
) -> Path:
    """Write the HTML report of sales with order dates from `start` to `end` (inclusive; open
    ends take everything) to `out`, and return its path."""
    if start is not None and end is not None and start > end:
        raise UsageError(f"--start {start} is after --end {end}: nothing to report")
    if not warehouse.holds_data():
        raise UsageError(
            f"{warehouse.location}: no warehouse yet; run `salesflow run` or `salesflow demo` first"
        )
    scope = Scope(start, end)
    try:
        text = render(warehouse, scope)
    except DATABASE_ERRORS as error:
        raise UsageError(
            f"{warehouse.location}: cannot read the warehouse ({error_line(error)})"
        ) from None
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{out}: cannot write the report ({error.strerror or error})") from None
    return out.resolve()


def render(warehouse: Warehouse, scope: Scope) -> str:
    """The report page of `scope`; charts only when the scope holds sales."""
    totals = queries.totals(warehouse, scope)
    anomalies, anomaly_note = queries.anomalies(warehouse, scope)
    charts: list[tuple[str, str, str, Any]] = []
    if totals.rows_loaded:
        for chart in CHART_SECTIONS:
            rows = queries.chart_rows(warehouse, scope, chart.query)
            figure = chart.build(rows, anomalies)
            charts.append((chart.element_id, chart.title, chart.why, figure))
    return page(warehouse.location, scope, totals, charts, anomalies, anomaly_note)
