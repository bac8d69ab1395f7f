"""The report's Plotly figures, each built from the aggregate rows of `queries.chart_rows`.

Plotly is imported inside the builders so that importing the package (the CLI does) stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from salesflow.report.queries import ANOMALY_LIMIT, Rows
from salesflow.report.template import label

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TICKET_ORDER = ("low", "medium", "high", "very_high", "return")
COLOURS = {"revenue": "#2563eb", "returns": "#dc2626", "loaded": "#16a34a", "orders": "#f59e0b"}


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


def daily_figure(rows: Rows, anomalies: Rows) -> Any:
    """Net revenue and returns per order date, with the days that carry a KPI anomaly marked."""
    import plotly.graph_objects as go

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
                text=[f"{label(row[1])} {label(row[2])} {label(row[7])}" for row in flagged],
                hoverinfo="text",
            )
        )
    return _figure(traces, barmode="relative", yaxis_title="money")


def breakdown_figure(rows: Rows) -> Any:
    """Net revenue and returns side by side per value of one column (region, category)."""
    import plotly.graph_objects as go

    names = [label(row[0]) for row in rows]
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


def ticket_figure(rows: Rows) -> Any:
    """Rows per ticket-size band, bands in their natural order rather than by count."""
    import plotly.graph_objects as go

    rank = {band: index for index, band in enumerate(TICKET_ORDER)}
    rows = sorted(rows, key=lambda row: (rank.get(row[0], len(rank)), str(row[0])))
    return _figure(
        [
            go.Bar(
                x=[label(row[0]) for row in rows],
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


def _right_line(x: Sequence[Any], y: Sequence[Any], name: str, colour: str) -> Any:
    """A line with markers on the right axis (`_right_axis`), drawn over a chart's bars."""
    import plotly.graph_objects as go

    return go.Scatter(x=x, y=y, name=name, yaxis="y2", mode="lines+markers", line_color=colour)


def weekday_figure(rows: Rows) -> Any:
    """Net revenue and orders per ISO weekday, every weekday shown even without sales."""
    import plotly.graph_objects as go

    found = {int(row[0]): row for row in rows}
    orders = [int(found[day][1]) if day in found else 0 for day in range(1, 8)]
    revenue = [float(found[day][2]) if day in found else 0.0 for day in range(1, 8)]
    return _figure(
        [
            go.Bar(x=WEEKDAYS, y=revenue, name="net revenue", marker_color=COLOURS["revenue"]),
            _right_line(WEEKDAYS, orders, "orders", COLOURS["orders"]),
        ],
        yaxis_title="money",
        yaxis2=_right_axis("orders"),
        xaxis={"categoryorder": "array", "categoryarray": WEEKDAYS},
    )


def quality_figure(rows: Rows) -> Any:
    """Rows loaded and rejected per batch, with the reject share as a line."""
    import plotly.graph_objects as go

    days = [row[0] for row in rows]
    loaded = [int(row[1] or 0) for row in rows]
    rejected = [int(row[2] or 0) for row in rows]
    share = [r / (r + n) * 100 if r + n else 0.0 for n, r in zip(loaded, rejected, strict=True)]
    return _figure(
        [
            go.Bar(x=days, y=loaded, name="rows loaded", marker_color=COLOURS["loaded"]),
            go.Bar(x=days, y=rejected, name="rows rejected", marker_color=COLOURS["returns"]),
            _right_line(days, share, "reject share %", "#111827"),
        ],
        barmode="stack",
        yaxis_title="rows",
        yaxis2=_right_axis("reject share %"),
    )


def reasons_figure(rows: Rows) -> Any:
    """Rejected rows per reason code, most frequent on top; says so when there are none."""
    import plotly.graph_objects as go

    figure = _figure(
        [
            go.Bar(
                y=[label(row[0]) for row in rows],
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


# A chart builder takes its query's rows and the anomalies (only the daily chart marks them).
Builder = Callable[[Rows, Rows], Any]


def _rows_only(build: Callable[[Rows], Any]) -> Builder:
    """A builder that ignores the anomalies, for the charts that do not mark them."""
    return lambda rows, _anomalies: build(rows)


class Chart(NamedTuple):
    """One chart section: its element id, title, the line under the title saying what it shows,
    the key of its query in `queries.CHART_QUERIES`, and its figure builder."""

    element_id: str
    title: str
    why: str
    query: str
    build: Builder


# The chart sections, in page order.
CHART_SECTIONS: tuple[Chart, ...] = (
    Chart(
        "chart-daily-revenue",
        "Daily net revenue and returns",
        "Net revenue per order date (returns included), and the value returned.",
        "daily",
        daily_figure,
    ),
    Chart(
        "chart-region",
        "Net revenue by region",
        "Net revenue and returns per region.",
        "region",
        _rows_only(breakdown_figure),
    ),
    Chart(
        "chart-category",
        "Net revenue by category",
        "Net revenue and returns per category.",
        "category",
        _rows_only(breakdown_figure),
    ),
    Chart(
        "chart-ticket-size",
        "Ticket-size distribution",
        "Accepted rows per ticket-size band (sales.ticket_size).",
        "ticket_size",
        _rows_only(ticket_figure),
    ),
    Chart(
        "chart-weekday",
        "Weekday pattern",
        "Net revenue and orders per weekday, Monday first.",
        "weekday",
        _rows_only(weekday_figure),
    ),
    Chart(
        "chart-quality",
        "Data quality: rows loaded and rejected",
        "Rows loaded and rejected per batch, placed at the batch's first order date.",
        "quality",
        _rows_only(quality_figure),
    ),
    Chart(
        "chart-reject-reasons",
        "Rejected rows by reason",
        "Reason codes of rejected rows (a row can carry several).",
        "reject_reasons",
        _rows_only(reasons_figure),
    ),
)
# (element id, title) per chart, in page order. Tests find the sections by these ids.
CHARTS: tuple[tuple[str, str], ...] = tuple(
    (chart.element_id, chart.title) for chart in CHART_SECTIONS
)
