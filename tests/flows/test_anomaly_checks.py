"""The KPI check of salesflow-etl end to end on the Prefect test API: a run over a spiked day logs
the anomaly, stores it, publishes the `salesflow-anomalies` artifact and emits the event, and its
progress artifact ends at 100; a check that fails leaves the load standing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pytest

from salesflow import stages
from salesflow.config import Settings
from salesflow.flows import tasks
from salesflow.flows.artifacts import ANOMALIES_KEY, ANOMALY_EVENT, PROGRESS_KEY
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.rules import ValidationRules
from salesflow.sources.generator import generate_day, generate_sales
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse
from tests.flows.test_quality import read_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

START = date(2024, 1, 1)
HISTORY_DAYS = 25
ROWS = 1000
SEED = 42
NORMAL_DAY = START + timedelta(days=HISTORY_DAYS)
SPIKE_DAY = NORMAL_DAY + timedelta(days=1)

T = TypeVar("T")


def eventually(read: Callable[[], T | None], seconds: float = 30) -> T:
    """What `read` returns once it returns something: logs and events reach the API from
    background workers, a moment after the flow returns."""
    deadline = time.monotonic() + seconds
    while True:
        found = read()
        if found or time.monotonic() > deadline:
            assert found, "not seen on the Prefect API in time"
            return found
        time.sleep(0.5)


def preload_history(settings: Settings, folder: Path) -> None:
    """Weeks of normal days loaded without Prefect: the history the run's days are judged by."""
    warehouse = DuckDBWarehouse(settings.warehouse_path)
    for source in generate_sales(folder, START, HISTORY_DAYS, ROWS, seed=SEED):
        manifest = stages.extract(source, folder / "staging", None, force=True)
        manifest = stages.validate(manifest, ValidationRules(), TicketBands())
        warehouse.load_batch(manifest, "history")


def landing_with_spike(folder: Path) -> Path:
    """A normal day, then a day whose North quantities are four times what they were."""
    folder.mkdir(parents=True)
    generate_day(NORMAL_DAY, ROWS, SEED).write_csv(folder / f"sales_{NORMAL_DAY}.csv")
    quantity = pl.col("quantity").cast(pl.Int64)
    generate_day(SPIKE_DAY, ROWS, SEED).with_columns(
        pl.when(pl.col("region") == "North").then(quantity * 4).otherwise(quantity).cast(pl.String)
    ).write_csv(folder / f"sales_{SPIKE_DAY}.csv")
    return folder


def read_logs(flow_run_id: str, min_level: int) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]),
                level=LogFilterLevel(ge_=min_level),
            )
        )
    return [log.message for log in logs]


def read_anomaly_events(resource_id: str, flow_run_id: str) -> list[Any]:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[ANOMALY_EVENT]),
                resource=EventResourceFilter(id=[resource_id]),
            ),
            limit=50,  # the client's default, 100, is above what the server accepts
        )
    return [event for event in page.events if event.payload.get("flow_run_id") == flow_run_id]


def test_a_spiked_day_is_logged_stored_published_and_emitted(
    settings: Settings, tmp_path: Path
) -> None:
    preload_history(settings, tmp_path / "history")

    summary = run_etl([landing_with_spike(tmp_path / "landing")], settings)

    run_id = summary.flow_run_id
    assert run_id is not None
    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED] * 2
    stored = DuckDBWarehouse(summary.warehouse).fetch(
        "SELECT order_date, region, kpi, direction, flow_run_id FROM anomalies"
    )
    assert (SPIKE_DAY, "North", "net_revenue", "spike", run_id) in stored
    assert {row[0] for row in stored} <= {NORMAL_DAY, SPIKE_DAY}

    markdown = read_artifact(run_id, ANOMALIES_KEY).data
    assert "Checked 2 day(s)" in markdown
    assert f"| {SPIKE_DAY} | North | net_revenue |" in markdown
    assert float(read_artifact(run_id, PROGRESS_KEY).data) == 100.0

    warnings = eventually(
        lambda: [
            line
            for line in read_logs(run_id, 30)
            if f"date={SPIKE_DAY} region=North kpi=net_revenue" in line
        ]
    )
    assert "spike" in warnings[0] and "median=" in warnings[0] and "z=+" in warnings[0]

    (event,) = eventually(lambda: read_anomaly_events("salesflow.kpi.North.net_revenue", run_id))
    assert event.payload["order_date"] == SPIKE_DAY.isoformat()
    assert event.payload["direction"] == "spike"
    assert event.payload["robust_z"] > 5
    assert event.resource["salesflow.region"] == "North"


def test_a_failing_check_leaves_the_load_standing_and_the_toggle_skips_it(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise RuntimeError("the check broke")

    monkeypatch.setattr(tasks, "check_days", broken)
    landing = tmp_path / "landing"
    generate_sales(landing, START, 1, 200, seed=SEED)

    summary = run_etl([landing], settings)

    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED]
    assert len(calls) == 1
    assert summary.flow_run_id is not None
    errors = eventually(
        lambda: [line for line in read_logs(summary.flow_run_id or "", 40) if "kpi" in line]
    )
    assert "kpi check failed, the load stands" in errors[0]

    off = settings.model_copy(update={"anomaly_checks": False})
    again = run_etl([landing], off, RunOptions(force=True))
    assert [o.status for o in again.outcomes] == [BatchStatus.LOADED]
    assert len(calls) == 1
