"""The report's HTML: the page around the figures, its styles and the anomalies table.

Only markup lives here; the numbers come from `queries` and the figures from `figures`. Every
text from the data is escaped, since a region or a reason code is whatever the source file said.
"""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal
from typing import Any

from salesflow.report.queries import ANOMALY_LIMIT, Rows, Scope, Totals

# No request of any kind: scripts and styles are inline, images only data: URIs (Plotly's
# "download as PNG" button), so a report opened from disk cannot call home or a CDN.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

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


def label(value: Any) -> str:
    """Text from data, escaped: Plotly renders a subset of HTML in labels, and so does a page."""
    return html.escape("(none)" if value is None or value == "" else str(value))


def _money(value: Decimal | float) -> str:
    return f"{value:,.2f}"


def _period(scope: Scope, totals: Totals) -> str:
    first = scope.start or totals.first_day
    last = scope.end or totals.last_day
    if first is None and last is None:
        return "all order dates (none loaded yet)"
    return f"{first or '…'} to {last or '…'}"


def page(
    location: str,
    scope: Scope,
    totals: Totals,
    charts: list[tuple[str, str, str, Any]],
    anomalies: Rows,
    anomaly_note: str | None,
) -> str:
    """The whole HTML page: header KPIs, one section per `(id, title, why, figure)` chart, the
    anomalies table and the footer; plotly.min.js is inlined only when there is a chart."""
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
        f"{html.escape(location)}</p>",
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


def _anomaly_section(anomalies: Rows, note: str | None) -> str:
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
            f"<td>{label(day)}</td><td>{label(region)}</td><td>{label(kpi)}</td>"
            f'<td class="num">{_number(value)}</td><td class="num">{_number(median)}</td>'
            f'<td class="num">{_number(mad)}</td><td class="num">{_number(z, "+,.2f")}</td>'
            f'<td class="{kind}">{label(direction)}</td><td class="num">{label(window)}</td>'
            f"<td>{label(detected)}</td>"
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
