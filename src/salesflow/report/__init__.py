"""`salesflow report`: one self-contained HTML file of charts, for analysts who would rather look.

Every number is aggregated in SQL through `Warehouse.fetch` (`queries`); Python only shapes a few
dozen aggregate rows into Plotly figures (`figures`) placed in one page (`template`), which
`writer` saves. plotly.min.js is inlined once and a Content-Security-Policy forbids any fetch, so
the file opens offline, from disk or a mail attachment, and never calls out.
"""

from __future__ import annotations

from salesflow.report.figures import CHARTS
from salesflow.report.queries import Scope, Totals
from salesflow.report.writer import write_report

__all__ = ["CHARTS", "Scope", "Totals", "write_report"]
