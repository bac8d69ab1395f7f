"""The report in a real headless Chromium (Debian's, installed by `make test`), offline: every
chart draws, nothing is fetched, nothing is logged as an error. A screenshot is kept under
test-artifacts/ for a human to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salesflow.report import CHARTS, write_report
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import TEST_ARTIFACTS
from tests.report.test_report import HOSTILE, with_anomalies

ARTIFACTS = TEST_ARTIFACTS

# Per chart section: whether Plotly made its SVG, how many shapes it holds, and how many data
# marks (bar paths, line and marker paths) its traces drew.
CHART_STATE_JS = """
(ids) => ids.map((id) => {
  const section = document.getElementById(id);
  if (!section) return {id, found: false};
  const svg = section.querySelector('.main-svg');
  const shapes = section.querySelectorAll('.main-svg path, .main-svg rect').length;
  const marks = [...section.querySelectorAll('.cartesianlayer .trace path')]
    .filter((p) => (p.getAttribute('d') || '').length > 4).length;
  return {id, found: true, svg: Boolean(svg), shapes, marks};
})
"""


def test_the_report_renders_every_chart_offline_without_errors_or_requests(
    browser: Any, loaded_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    warehouse = with_anomalies(loaded_warehouse, tmp_path / "wh")
    report = write_report(warehouse, tmp_path / "report.html")
    url = report.as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_offline(True)
    requests: list[str] = []
    errors: list[str] = []
    blocked: list[str] = []

    def route(route: Any) -> None:
        """Anything but the report itself is recorded and refused."""
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function(
            "(n) => document.querySelectorAll('section.chart .main-svg').length >= n",
            arg=len(CHARTS),
            timeout=30_000,
        )
        page.wait_for_timeout(500)  # let responsive relayouts settle before the checks
        states = page.evaluate(CHART_STATE_JS, [chart_id for chart_id, _ in CHARTS])
        anomaly_rows = page.locator("#anomalies table tbody tr").count()
        anomaly_text = page.locator("#anomalies").inner_text()
        injected = page.evaluate("() => document.querySelectorAll('main script').length")
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()

    assert errors == []
    assert blocked == []
    assert requests == [url]
    for state in states:
        assert state["found"] and state["svg"], state
        assert state["shapes"] > 0, state
        assert state["marks"] > 0, state
    assert anomaly_rows == 2
    assert HOSTILE in anomaly_text  # shown as text, not run
    assert injected == len(CHARTS)  # only the charts' own scripts live in <main>
    assert screenshot.stat().st_size > 50_000
