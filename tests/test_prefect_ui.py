"""The Prefect UI of a real `prefect server`, in headless Chromium: a salesflow run's page shows
its quality and batches artifacts, where an operator looks first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from salesflow.config import Settings
from salesflow.flows.artifacts import BATCHES_KEY, QUALITY_KEY
from salesflow.flows.etl import run_etl
from salesflow.options import RunOptions
from salesflow.server import PrefectServer
from tests.conftest import CANONICAL_HEADER, TEST_ARTIFACTS, write_csv
from tests.test_serve import api_of

pytestmark = pytest.mark.e2e


def test_the_run_page_shows_the_quality_and_batches_artifacts(
    prefect_server: PrefectServer, settings: Settings, tmp_path: Path, browser: Any
) -> None:
    day = write_csv(
        tmp_path / "landing" / "sales_2024-03-01.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C2,S2,Mug,Home,x,3.25,North",
    )
    with api_of(prefect_server):
        summary = run_etl([day], settings, RunOptions(accept_rejects=True))
    assert summary.flow_run_id is not None

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{prefect_server.ui_url}/runs/flow-run/{summary.flow_run_id}")
        page.locator("[role=tablist] #artifacts").click(timeout=60_000)
        for key in (QUALITY_KEY, BATCHES_KEY):
            page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
        TEST_ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(TEST_ARTIFACTS / "prefect-ui-run-artifacts.png"), full_page=True)
    finally:
        page.close()
    assert not errors, errors
