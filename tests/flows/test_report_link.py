"""A run asked for a report writes it after loading and links it from its Prefect artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesflow.config import Settings
from salesflow.flows.artifacts import REPORT_KEY
from salesflow.flows.etl import run_etl
from salesflow.options import RunOptions
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.flows.test_quality import read_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def test_the_run_writes_the_report_and_publishes_a_link_to_it(
    settings: Settings, tmp_path: Path
) -> None:
    day = write_csv(
        tmp_path / "landing" / "sales_2024-03-01.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C2,S2,Mug,Home,1,3.25,South",
    )
    report = tmp_path / "out" / "report.html"

    summary = run_etl([day], settings, RunOptions(report=report))

    html = report.read_text(encoding="utf-8")
    assert 'id="chart-daily-revenue"' in html and "North" in html
    link = read_artifact(summary.flow_run_id, REPORT_KEY)
    # Prefect 3 stores a link artifact as a Markdown link.
    assert f"]({report.resolve().as_uri()})" in str(link.data)


def test_without_a_report_the_run_writes_none(settings: Settings, tmp_path: Path) -> None:
    day = write_csv(
        tmp_path / "landing" / "sales_2024-03-01.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
    )
    summary = run_etl([day], settings)

    with pytest.raises(ValueError):  # no artifact under the key: nothing to unpack
        read_artifact(summary.flow_run_id, REPORT_KEY)
    assert not list(tmp_path.rglob("*.html"))
