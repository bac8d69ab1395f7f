"""`salesflow report`: one self-contained HTML file of charts, for analysts who would rather look.

Every number is aggregated in SQL through `Warehouse.fetch` (`?` placeholders, so DuckDB and
PostgreSQL answer the same queries); Python only shapes a few dozen aggregate rows into Plotly
figures. plotly.min.js is inlined once and a Content-Security-Policy forbids any fetch, so the
file opens offline, from disk or a mail attachment, and never calls out.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from salesflow.errors import UsageError
from salesflow.warehouse import DATABASE_ERRORS
from salesflow.warehouse.base import Warehouse, error_line

# The chart sections, in page order: (element id, title). Tests find them by these ids.
CHARTS: tuple[tuple[str, str], ...] = (
    ("chart-daily-revenue", "Daily net revenue and returns"),
    ("chart-region", "Net revenue by region"),
    ("chart-category", "Net revenue by category"),
    ("chart-ticket-size", "Ticket-size distribution"),
    ("chart-weekday", "Weekday pattern"),
    ("chart-quality", "Data quality: rows loaded and rejected"),
    ("chart-reject-reasons", "Rejected rows by reason"),
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TICKET_ORDER = ("low", "medium", "high", "very_high", "return")
ANOMALY_LIMIT = 1000  # rows shown in the anomalies table; more is noise for a reader

# No request of any kind: scripts and styles are inline, images only data: URIs (Plotly's
# "download as PNG" button), so a report opened from disk cannot call home or a CDN.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
COLOURS = {"revenue": "#2563eb", "returns": "#dc2626", "loaded": "#16a34a", "orders": "#f59e0b"}

CSS = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #f8fafc; }
header, main { max-width: 1200px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 0 0 4px; font-size: 18px; }
.meta { margin: 0; color: var(--muted); }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
        margin: 20px 0; padding: 0; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.kpi dt { color: var(--muted); font-size: 13px; }
.kpi dd { margin: 2px 0 0; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.notice { background: #fffbeb; border: 1px solid #fcd34d; border-radius: 8px; padding: 12px 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px;
          margin-bottom: 16px; }
.grid section { margin-bottom: 0; }
section p.why { margin: 0 0 8px; color: var(--muted); font-size: 13px; }
.chart .plot { min-height: 360px; }
#chart-daily-revenue { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.spike { color: #b45309; font-weight: 600; }
.drop { color: #1d4ed8; font-weight: 600; }
footer { max-width: 1200px; margin: 0 auto; padding: 8px 24px 32px; color: var(--muted);
         font-size: 13px; }
"""


@dataclass(frozen=True)
class Scope:
    """The order-date range a report covers, as SQL conditions with their `?` parameters."""

    start: date | None
    end: date | None

    def dates(self, column: str = "order_date") -> tuple[str, list[Any]]:
        """A WHERE condition on an order-date column."""
        conditions, params = ["TRUE"], []
        if self.start is not None:
            conditions.append(f"{column} >= ?")
            params.append(self.start)
        if self.end is not None:
            conditions.append(f"{column} <= ?")
            params.append(self.end)
        return " AND ".join(conditions), params

    def batches(self) -> tuple[str, list[Any]]:
        """A WHERE condition on batch_id: rejected rows carry no trustworthy order date, so a
        date range keeps the rejects of the batches that loaded rows in it."""
        if self.start is None and self.end is None:
            return "TRUE", []
        where, params = self.dates()
        return f"batch_id IN (SELECT batch_id FROM sales WHERE {where})", params


@dataclass(frozen=True)
class Totals:
    """The header's numbers."""

    rows_loaded: int
    rows_rejected: int
    orders: int
    net_revenue: Decimal
    returns_value: Decimal
    first_day: date | None
    last_day: date | None


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
        page = _render(warehouse, scope)
    except DATABASE_ERRORS as error:
        raise UsageError(
            f"{warehouse.location}: cannot read the warehouse ({error_line(error)})"
        ) from None
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{out}: cannot write the report ({error.strerror or error})") from None
    return out.resolve()


def _render(warehouse: Warehouse, scope: Scope) -> str:
    totals = _totals(warehouse, scope)
    anomalies, anomaly_note = _anomalies(warehouse, scope)
    charts: list[tuple[str, str, str, Any]] = []
    if totals.rows_loaded:
        builders: dict[str, tuple[str, Callable[[Warehouse, Scope], Any]]] = {
            "chart-daily-revenue": (
                "Net revenue per order date (returns included), and the value returned.",
                lambda w, s: _daily_figure(w, s, anomalies),
            ),
            "chart-region": ("Net revenue and returns per region.", _region_figure),
            "chart-category": ("Net revenue and returns per category.", _category_figure),
            "chart-ticket-size": (
                "Accepted rows per ticket-size band (sales.ticket_size).",
                _ticket_figure,
            ),
            "chart-weekday": ("Net revenue and orders per weekday, Monday first.", _weekday_figure),
            "chart-quality": (
                "Rows loaded and rejected per batch, placed at the batch's first order date.",
                _quality_figure,
            ),
            "chart-reject-reasons": (
                "Reason codes of rejected rows (a row can carry several).",
                _reasons_figure,
            ),
        }
        for chart_id, title in CHARTS:
            why, build = builders[chart_id]
            charts.append((chart_id, title, why, build(warehouse, scope)))
    return _page(warehouse, scope, totals, charts, anomalies, anomaly_note)


def _totals(warehouse: Warehouse, scope: Scope) -> Totals:
    where, params = scope.dates()
    rows, orders, revenue, returns, first, last = warehouse.fetch(
        "SELECT count(*), count(DISTINCT order_id), coalesce(sum(total), 0), "
        "coalesce(sum(-total) FILTER (WHERE quantity < 0), 0), min(order_date), max(order_date) "
        f"FROM sales WHERE {where}",
        params,
    )[0]
    batch_where, batch_params = scope.batches()
    (rejected,) = warehouse.fetch(
        f"SELECT count(*) FROM sales_rejected WHERE {batch_where}", batch_params
    )[0]
    return Totals(
        int(rows), int(rejected), int(orders), Decimal(revenue), Decimal(returns), first, last
    )


def _anomalies(warehouse: Warehouse, scope: Scope) -> tuple[list[tuple[Any, ...]], str | None]:
    """The KPI anomalies in range, if the `anomalies` table exists; a table that cannot be read
    (another version's columns) is said in the report, not a failed report."""
    (exists,) = warehouse.fetch(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = current_schema() AND table_name = 'anomalies'"
    )[0]
    if not exists:
        return [], None
    where, params = scope.dates()
    try:
        rows = warehouse.fetch(
            "SELECT order_date, region, kpi, value, median, mad, robust_z, direction, "
            f"window_days, detected_at FROM anomalies WHERE {where} "
            f"ORDER BY order_date, region, kpi LIMIT {ANOMALY_LIMIT + 1}",
            params,
        )
    except DATABASE_ERRORS as error:
        return [], f"The anomalies table could not be read: {error_line(error)}"
    return rows, None


def _figure(traces: Sequence[Any], **layout: Any) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(data=list(traces))
    defaults: dict[str, Any] = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
        "legend": {"orientation": "h", "y": -0.18},
        "hovermode": "x unified",
        "height": 380,
    }
    figure.update_layout(**(defaults | layout))
    return figure


def _label(value: Any) -> str:
    """Text from data, escaped: Plotly renders a subset of HTML in labels."""
    return html.escape("(none)" if value is None or value == "" else str(value))


def _daily_figure(warehouse: Warehouse, scope: Scope, anomalies: list[tuple[Any, ...]]) -> Any:
    import plotly.graph_objects as go

    where, params = scope.dates()
    rows = warehouse.fetch(
        "SELECT order_date, sum(net_revenue), sum(returns_value) FROM daily_sales "
        f"WHERE {where} GROUP BY order_date ORDER BY order_date",
        params,
    )
    days = [row[0] for row in rows]
    revenue = [float(row[1]) for row in rows]
    traces: list[Any] = [
        go.Bar(x=days, y=revenue, name="net revenue", marker_color=COLOURS["revenue"]),
        go.Bar(
            x=days,
            y=[-float(row[2]) for row in rows],
            name="returns (value returned)",
            marker_color=COLOURS["returns"],
        ),
    ]
    by_day = dict(zip(days, revenue, strict=True))
    flagged = [row for row in anomalies[:ANOMALY_LIMIT] if row[0] in by_day]
    if flagged:
        traces.append(
            go.Scatter(
                x=[row[0] for row in flagged],
                y=[by_day[row[0]] for row in flagged],
                mode="markers",
                name="KPI anomaly",
                marker={"symbol": "diamond", "size": 11, "color": "#111827"},
                text=[f"{_label(row[1])} {_label(row[2])} {_label(row[7])}" for row in flagged],
                hoverinfo="text",
            )
        )
    return _figure(traces, barmode="relative", yaxis_title="money")


def _breakdown_figure(warehouse: Warehouse, scope: Scope, column: str) -> Any:
    import plotly.graph_objects as go

    where, params = scope.dates()
    rows = warehouse.fetch(
        f"SELECT {column}, sum(net_revenue), sum(returns_value) FROM daily_sales "
        f'WHERE {where} GROUP BY {column} ORDER BY sum(net_revenue) DESC, {column} COLLATE "C"',
        params,
    )
    names = [_label(row[0]) for row in rows]
    return _figure(
        [
            go.Bar(
                x=names,
                y=[float(row[1]) for row in rows],
                name="net revenue",
                marker_color=COLOURS["revenue"],
            ),
            go.Bar(
                x=names,
                y=[float(row[2]) for row in rows],
                name="returns",
                marker_color=COLOURS["returns"],
            ),
        ],
        barmode="group",
        yaxis_title="money",
    )


def _region_figure(warehouse: Warehouse, scope: Scope) -> Any:
    return _breakdown_figure(warehouse, scope, "region")


def _category_figure(warehouse: Warehouse, scope: Scope) -> Any:
    return _breakdown_figure(warehouse, scope, "category")


def _ticket_figure(warehouse: Warehouse, scope: Scope) -> Any:
    import plotly.graph_objects as go

    where, params = scope.dates()
    rows = warehouse.fetch(
        f"SELECT ticket_size, count(*), sum(total) FROM sales WHERE {where} GROUP BY ticket_size",
        params,
    )
    rank = {band: index for index, band in enumerate(TICKET_ORDER)}
    rows.sort(key=lambda row: (rank.get(row[0], len(rank)), str(row[0])))
    return _figure(
        [
            go.Bar(
                x=[_label(row[0]) for row in rows],
                y=[int(row[1]) for row in rows],
                name="rows",
                marker_color=COLOURS["revenue"],
                customdata=[float(row[2]) for row in rows],
                hovertemplate="%{y:,} rows, %{customdata:,.2f} net<extra></extra>",
            )
        ],
        yaxis_title="rows",
        showlegend=False,
    )


def _right_axis(title: str) -> dict[str, Any]:
    """A second y axis on the right, from zero, for a line over bars."""
    return {
        "title": title,
        "overlaying": "y",
        "side": "right",
        "showgrid": False,
        "rangemode": "tozero",
    }


def _weekday_figure(warehouse: Warehouse, scope: Scope) -> Any:
    import plotly.graph_objects as go

    where, params = scope.dates()
    rows = warehouse.fetch(
        "SELECT CAST(extract(isodow FROM order_date) AS INTEGER), count(DISTINCT order_id), "
        f"sum(total) FROM sales WHERE {where} GROUP BY 1 ORDER BY 1",
        params,
    )
    found = {int(row[0]): row for row in rows}
    orders = [int(found[day][1]) if day in found else 0 for day in range(1, 8)]
    revenue = [float(found[day][2]) if day in found else 0.0 for day in range(1, 8)]
    return _figure(
        [
            go.Bar(x=WEEKDAYS, y=revenue, name="net revenue", marker_color=COLOURS["revenue"]),
            go.Scatter(
                x=WEEKDAYS,
                y=orders,
                name="orders",
                yaxis="y2",
                mode="lines+markers",
                line_color=COLOURS["orders"],
            ),
        ],
        yaxis_title="money",
        yaxis2=_right_axis("orders"),
        xaxis={"categoryorder": "array", "categoryarray": WEEKDAYS},
    )


def _quality_figure(warehouse: Warehouse, scope: Scope) -> Any:
    import plotly.graph_objects as go

    where, params = scope.dates()
    rows = warehouse.fetch(
        "SELECT d.first_day, sum(b.rows_loaded), sum(b.rows_rejected) FROM batches AS b "
        "JOIN (SELECT batch_id, min(order_date) AS first_day FROM sales "
        f"WHERE {where} GROUP BY batch_id) AS d ON d.batch_id = b.batch_id "
        "WHERE b.rows_in IS NOT NULL GROUP BY d.first_day ORDER BY d.first_day",
        params,
    )
    days = [row[0] for row in rows]
    loaded = [int(row[1] or 0) for row in rows]
    rejected = [int(row[2] or 0) for row in rows]
    share = [r / (r + n) * 100 if r + n else 0.0 for n, r in zip(loaded, rejected, strict=True)]
    return _figure(
        [
            go.Bar(x=days, y=loaded, name="rows loaded", marker_color=COLOURS["loaded"]),
            go.Bar(x=days, y=rejected, name="rows rejected", marker_color=COLOURS["returns"]),
            go.Scatter(
                x=days,
                y=share,
                name="reject share %",
                yaxis="y2",
                mode="lines+markers",
                line_color="#111827",
            ),
        ],
        barmode="stack",
        yaxis_title="rows",
        yaxis2=_right_axis("reject share %"),
    )


def _reasons_figure(warehouse: Warehouse, scope: Scope) -> Any:
    import plotly.graph_objects as go

    where, params = scope.batches()
    rows = warehouse.fetch(
        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM sales_rejected "
        f'WHERE {where}) AS r GROUP BY reason ORDER BY count(*) DESC, reason COLLATE "C"',
        params,
    )
    figure = _figure(
        [
            go.Bar(
                y=[_label(row[0]) for row in rows],
                x=[int(row[1]) for row in rows],
                orientation="h",
                name="rows",
                marker_color=COLOURS["returns"],
            )
        ],
        xaxis_title="rows",
        showlegend=False,
        hovermode="y unified",
    )
    figure.update_yaxes(autorange="reversed")
    if not rows:
        figure.add_annotation(text="no rejected rows", showarrow=False, x=0.5, y=0.5)
        figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return figure


def _money(value: Decimal | float) -> str:
    return f"{value:,.2f}"


def _period(scope: Scope, totals: Totals) -> str:
    first = scope.start or totals.first_day
    last = scope.end or totals.last_day
    if first is None and last is None:
        return "all order dates (none loaded yet)"
    return f"{first or '…'} to {last or '…'}"


def _page(
    warehouse: Warehouse,
    scope: Scope,
    totals: Totals,
    charts: list[tuple[str, str, str, Any]],
    anomalies: list[tuple[Any, ...]],
    anomaly_note: str | None,
) -> str:
    from plotly.offline import get_plotlyjs

    period = html.escape(_period(scope, totals))
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    seen = totals.rows_loaded + totals.rows_rejected
    share = f"{totals.rows_rejected / seen:.1%}" if seen else "n/a"
    kpis = (
        ("Rows loaded", f"{totals.rows_loaded:,}"),
        ("Rows rejected", f"{totals.rows_rejected:,}"),
        ("Reject share", share),
        ("Orders", f"{totals.orders:,}"),
        ("Net revenue", _money(totals.net_revenue)),
        ("Returns", _money(totals.returns_value)),
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>salesflow report: {period}</title>",
        f"<style>{CSS}</style>",
    ]
    if charts:
        parts.append(f'<script type="text/javascript">{get_plotlyjs()}</script>')
    parts += [
        "</head><body>",
        "<header><h1>Sales report</h1>",
        f'<p class="meta" id="period">Order dates {period}</p>',
        f'<p class="meta" id="generated">Generated {html.escape(generated)} from '
        f"{html.escape(warehouse.location)}</p>",
        '<dl class="kpis" id="totals">',
        *(
            f'<div class="kpi"><dt>{name}</dt><dd>{html.escape(value)}</dd></div>'
            for name, value in kpis
        ),
        "</dl></header><main>",
    ]
    if not totals.rows_loaded:
        where = "in this period" if scope.start or scope.end else "in the warehouse yet"
        parts.append(f'<p class="notice" id="no-sales">No sales {where}: nothing to chart.</p>')
    else:
        parts.append('<div class="grid">')
        for chart_id, title, why, figure in charts:
            plot = figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"{chart_id}-plot",
                config=PLOTLY_CONFIG,
            )
            parts.append(
                f'<section class="chart" id="{chart_id}"><h2>{html.escape(title)}</h2>'
                f'<p class="why">{html.escape(why)}</p><div class="plot">{plot}</div></section>'
            )
        parts.append("</div>")
    parts.append(_anomaly_section(anomalies, anomaly_note))
    parts += [
        "</main>",
        "<footer>salesflow report. Rejected rows count against the batch they came from: a date "
        "range keeps the rejects of the batches that loaded sales in it.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _anomaly_section(anomalies: list[tuple[Any, ...]], note: str | None) -> str:
    head = '<section id="anomalies"><h2>KPI anomalies</h2>'
    if note is not None:
        return f'{head}<p class="notice">{html.escape(note)}</p></section>'
    if not anomalies:
        return f'{head}<p id="no-anomalies">No KPI anomalies in this period.</p></section>'
    columns = (
        ("order date", ""),
        ("region", ""),
        ("KPI", ""),
        ("value", "num"),
        ("median", "num"),
        ("MAD", "num"),
        ("robust z", "num"),
        ("direction", ""),
        ("window (days)", "num"),
        ("detected at", ""),
    )
    header = "".join(f'<th class="{kind}">{name}</th>' for name, kind in columns)
    body = []
    for day, region, kpi, value, median, mad, z, direction, window, detected in anomalies[
        :ANOMALY_LIMIT
    ]:
        kind = direction if direction in ("spike", "drop") else ""
        cells = (
            f"<td>{_label(day)}</td><td>{_label(region)}</td><td>{_label(kpi)}</td>"
            f'<td class="num">{_number(value)}</td><td class="num">{_number(median)}</td>'
            f'<td class="num">{_number(mad)}</td><td class="num">{_number(z, "+,.2f")}</td>'
            f'<td class="{kind}">{_label(direction)}</td><td class="num">{_label(window)}</td>'
            f"<td>{_label(detected)}</td>"
        )
        body.append(f"<tr>{cells}</tr>")
    more = (
        f"<p>Showing the first {ANOMALY_LIMIT:,}; query the anomalies table for the rest.</p>"
        if len(anomalies) > ANOMALY_LIMIT
        else ""
    )
    return (
        f'{head}<table id="anomaly-table"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}</section>"
    )


def _number(value: Any, spec: str = ",.2f") -> str:
    return "" if value is None else html.escape(format(float(value), spec))
