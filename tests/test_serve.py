"""The served route on a real Prefect server: `salesflow serve` registers the configured schedules,
runs what the API asks with typed parameters, stops cleanly; and the scheduled flows themselves."""

from __future__ import annotations

import inspect
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import DeploymentStatus, FlowRun
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.events.worker import EventsWorker
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.asyncutils import run_coro_as_sync

from salesflow.server import PrefectServer, free_port
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, fresh_process_env, write_csv
from tests.prefect_server import client_env

T = TypeVar("T")

DEPLOYMENTS = (
    "salesflow-daily/daily",
    "salesflow-poll/poll",
    "salesflow-quality-report/quality-report",
)
# Schedules unlike the defaults, in a zone other than UTC, and none due while a test runs (the
# poll fires once a day at midnight Madrid time).
SERVED_SETTINGS = {
    "SALESFLOW_TIMEZONE": "Europe/Madrid",
    "SALESFLOW_DAILY_CRON": "30 5 * * *",
    "SALESFLOW_POLL_INTERVAL_MINUTES": "1440",
    "SALESFLOW_QUALITY_RRULE": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=15",
}


# -- helpers shared with test_deployments and test_status ---------------------------------------


@contextmanager
def client_of(server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """A Prefect client in this process talking to `server`, not to the session's harness."""
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        yield c


@contextmanager
def api_of(server: PrefectServer) -> Iterator[None]:
    """Flows called in this process run against `server`; their logs and events are sent
    before leaving, as prefect_test_harness does, not at exit when the server is gone."""
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        try:
            yield
        finally:
            run_coro_as_sync(_drain_prefect_workers())


async def _drain_prefect_workers() -> None:
    with suppress(RuntimeError):  # never started
        drained = APILogWorker.instance().drain()
        if inspect.isawaitable(drained):
            await drained
    drained = EventsWorker.drain_all()
    if inspect.isawaitable(drained):
        await drained


def wait_for(read: Callable[[], T | None], timeout: float = 60, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while (value := read()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.5)
    return value


def final_run(client: SyncPrefectClient, flow_run_id: UUID, timeout: float = 180) -> FlowRun:
    """The flow run once it reached a final state (Completed, Failed, Crashed, Cancelled)."""

    def finished() -> FlowRun | None:
        run = client.read_flow_run(flow_run_id)
        return run if run.state is not None and run.state.is_final() else None

    return wait_for(finished, timeout, f"final state of flow run {flow_run_id}")


def day_file(landing: Path, day: date, rows: int) -> Path:
    """A landing file for `day` holding `rows` valid rows of 2 x 10.50."""
    lines = [f"O{day:%m%d}-{n},{day},C{n},S{n},P,C,2,10.50,North" for n in range(rows)]
    return write_csv(landing / f"sales_{day}.csv", CANONICAL_HEADER, *lines)


def salesflow_env(server: PrefectServer, root: Path, **settings: str) -> dict[str, str]:
    """A salesflow process using `server`, its data under `root`, quick retries, wide output."""
    return client_env(server, root / "prefect-home") | {
        "SALESFLOW_DATA_DIR": str(root / "data"),
        "SALESFLOW_LANDING_DIR": str(root / "landing"),
        "SALESFLOW_RETRY_DELAY_SECONDS": "0",
        "SALESFLOW_MAX_WORKERS": "2",
        "COLUMNS": "200",
        **settings,
    }


def rule_of(schedule: RRuleSchedule) -> str:
    """The RRule as configured: the server adds its default DTSTART when a rule has none."""
    return schedule.rrule.removeprefix("DTSTART:20200101T000000\n")


def warehouse_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    with DuckDBWarehouse(root / "data" / "warehouse.duckdb").reader() as con:
        return con.execute(sql).fetchall()


# -- a served process ---------------------------------------------------------------------------


@dataclass
class Served:
    server: PrefectServer
    root: Path
    env: dict[str, str]
    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path

    def run(self, name: str, **parameters: Any) -> FlowRun:
        """Ask the API for a run of deployment `name`; the served process picks it up."""
        with client_of(self.server) as client:
            deployment = client.read_deployment_by_name(name)
            created = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            return final_run(client, created.id)

    def stop(self, signum: signal.Signals) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        return code, self.stdout.read_text(), self.stderr.read_text()


@contextmanager
def serving(server: PrefectServer, root: Path) -> Iterator[Served]:
    """`salesflow serve` in its own process on `server`, once its deployments are registered."""
    landing = root / "landing"
    day_file(landing, date(2024, 3, 1), rows=3)
    day_file(landing, date(2024, 3, 2), rows=4)
    env = salesflow_env(server, root, **SERVED_SETTINGS)
    stdout, stderr = root / "serve.out", root / "serve.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = _start_serve(root, env, out, err)
    served = Served(server, root, env, process, stdout, stderr)
    try:
        with client_of(server) as client:

            def registered() -> bool | None:
                if process.poll() is not None:
                    raise AssertionError(f"serve exited early: {stderr.read_text()}")
                try:
                    deployments = [client.read_deployment_by_name(name) for name in DEPLOYMENTS]
                except ObjectNotFound:
                    return None
                schedules = [s.schedule for s in deployments[0].schedules]
                ours = [s for s in schedules if isinstance(s, CronSchedule)]
                # READY once the runner polls for their runs: registered is not yet served.
                ready = all(
                    d.status == DeploymentStatus.READY and d.work_pool_name is None
                    for d in deployments
                )
                return True if ready and ours and ours[0].cron == "30 5 * * *" else None

            wait_for(registered, timeout=120, what="served deployments polled for runs")
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _start_serve(root: Path, env: dict[str, str], out: IO[str], err: IO[str]) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "salesflow.cli", "serve"],
        cwd=root,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )


@pytest.fixture(scope="module")
def served(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with serving(prefect_server, tmp_path_factory.mktemp("served")) as handle:
        yield handle


@pytest.mark.e2e
def test_serve_registers_exactly_the_configured_schedules_in_the_shop_time_zone(
    served: Served,
) -> None:
    with client_of(served.server) as client:
        daily, poll, report = (client.read_deployment_by_name(name) for name in DEPLOYMENTS)

    assert [(s.schedule, s.active) for s in daily.schedules] == [
        (CronSchedule(cron="30 5 * * *", timezone="Europe/Madrid"), True)
    ]
    (interval,) = [s.schedule for s in poll.schedules]
    assert isinstance(interval, IntervalSchedule)
    assert (interval.interval, interval.timezone) == (timedelta(days=1), "Europe/Madrid")
    assert interval.anchor_date == datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Madrid"))
    (rrule,) = [s.schedule for s in report.schedules]
    assert isinstance(rrule, RRuleSchedule)
    assert (rule_of(rrule), rrule.timezone) == (
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=15",
        "Europe/Madrid",
    )
    assert (daily.parameters, poll.parameters, report.parameters) == (
        {"fail_if_missing": True},
        {},
        {"days": 7},
    )
    assert {d.work_pool_name for d in (daily, poll, report)} == {None}
    assert daily.entrypoint == "salesflow.flows.scheduled.daily_flow"


@pytest.mark.e2e
def test_a_day_triggered_through_the_api_is_loaded_by_the_served_process_and_shown_by_status(
    served: Served,
) -> None:
    run = served.run(DEPLOYMENTS[0], day="2024-03-02")

    assert run.state is not None and run.state.is_completed(), run.state
    assert warehouse_rows(served.root, "SELECT batch_id, status, rows_loaded FROM batches") == [
        ("sales_2024-03-02.csv", "loaded", 4)
    ]
    status = subprocess.run(
        [sys.executable, "-m", "salesflow.cli", "status", "--limit", "5"],
        cwd=served.root,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (line,) = [row for row in status.stdout.splitlines() if run.name in row]
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    # flow, run, state, started, took | batches loaded, failed, rows, rejected (from the
    # salesflow-etl subflow, counted in its daily parent's line)
    assert cells[:3] == ["daily", run.name, "Completed"]
    assert cells[5:] == ["1", "0", "4", "0"]


@pytest.mark.e2e
def test_a_bad_parameter_fails_with_a_clear_validation_error(served: Served) -> None:
    run = served.run(DEPLOYMENTS[0], day="2024-13-01")

    assert run.state is not None and run.state.is_failed()
    assert "Validation of flow parameters failed" in (run.state.message or "")
    assert "day: Input should be a valid date" in (run.state.message or "")
    assert "month value is outside expected range of 1-12" in (run.state.message or "")
    with (
        client_of(served.server) as client,
        pytest.raises(PrefectHTTPStatusError, match="0 is less than the minimum of 1"),
    ):
        report = client.read_deployment_by_name(DEPLOYMENTS[2])
        client.create_flow_run_from_deployment(report.id, parameters={"days": 0})


@pytest.mark.e2e
def test_a_day_whose_file_never_arrived_fails_the_daily_run_naming_it(served: Served) -> None:
    run = served.run(DEPLOYMENTS[0], day="2024-03-05")

    assert run.state is not None and run.state.is_failed()
    assert "no landing file for 2024-03-05" in (run.state.message or "")


@pytest.mark.e2e
def test_sigterm_stops_serve_cleanly_and_pauses_its_schedules(served: Served) -> None:
    """Last in this module: it stops the shared served process."""
    started = time.monotonic()
    code, out, err = served.stop(signal.SIGTERM)
    took = time.monotonic() - started

    assert code == 0, err
    assert took < 5, took
    assert out.strip().splitlines()[-1] == "stopped serving; schedules paused"
    assert "Traceback" not in err and "Warning" not in err
    with client_of(served.server) as client:
        paused = [client.read_deployment_by_name(name).paused for name in DEPLOYMENTS]
    assert paused == [True] * len(DEPLOYMENTS)


@pytest.mark.e2e
def test_sigterm_stops_serve_within_5_s_when_its_server_is_gone(tmp_path: Path) -> None:
    """The server stops first: the schedules cannot be paused, and Prefect's client would retry
    the pause for minutes. serve says so in one line and exits 3 within 5 s."""
    server = PrefectServer(tmp_path / "server-home").start()
    try:
        with serving(server, tmp_path / "served") as handle:
            server.stop()
            started = time.monotonic()
            code, out, err = handle.stop(signal.SIGTERM)
            took = time.monotonic() - started
    finally:
        server.stop()

    assert code == 3, err
    assert took < 5, took
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: stopped serving, schedules NOT paused: Prefect API unreachable at "
        f"{server.api_url} (connection refused); start the server again, then `salesflow serve` "
        "(or pause the schedules in the UI)"
    ]
    assert "stopped serving; schedules paused" not in out


@pytest.mark.e2e
def test_serve_on_a_postgres_backed_server_runs_a_day_and_stops_on_ctrl_c(
    prefect_server_on_postgres: PrefectServer, tmp_path: Path
) -> None:
    with serving(prefect_server_on_postgres, tmp_path) as handle:
        run = handle.run(DEPLOYMENTS[0], day="2024-03-01")
        code, out, err = handle.stop(signal.SIGINT)
        with client_of(prefect_server_on_postgres) as client:
            paused = [client.read_deployment_by_name(name).paused for name in DEPLOYMENTS]

    assert run.state is not None and run.state.is_completed(), run.state
    assert warehouse_rows(tmp_path, "SELECT batch_id, rows_loaded FROM batches") == [
        ("sales_2024-03-01.csv", 3)
    ]
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "stopped serving; schedules paused"
    assert "Traceback" not in err
    assert paused == [True] * len(DEPLOYMENTS)


# -- the scheduled flows, called in this process against the server ------------------------------


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings of the flows in this process: data and landing under tmp_path."""
    monkeypatch.setenv("SALESFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SALESFLOW_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SALESFLOW_RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("SALESFLOW_MAX_WORKERS", "2")
    return tmp_path


@pytest.mark.e2e
def test_a_missing_day_not_required_completes_with_no_batches(
    prefect_server: PrefectServer, shop: Path
) -> None:
    from salesflow.flows.scheduled import daily_flow

    day_file(shop / "landing", date(2024, 3, 1), rows=2)

    with api_of(prefect_server):
        state = daily_flow(day=date(2024, 3, 5), fail_if_missing=False, return_state=True)

    assert state.is_completed()
    assert state.result().outcomes == []
    assert not (shop / "data" / "warehouse.duckdb").exists()


@pytest.mark.e2e
def test_poll_loads_new_and_changed_files_and_leaves_unchanged_ones_out(
    prefect_server: PrefectServer, shop: Path
) -> None:
    from salesflow.flows.scheduled import poll_flow

    landing = shop / "landing"
    day_file(landing, date(2024, 3, 1), rows=2)
    day_file(landing, date(2024, 3, 2), rows=3)

    with api_of(prefect_server):
        first = poll_flow()
        day_file(landing, date(2024, 3, 3), rows=1)
        day_file(landing, date(2024, 3, 1), rows=5)  # corrected and re-delivered
        second = poll_flow()
        third = poll_flow()

    assert [(o.batch_id, o.rows_loaded) for o in first.outcomes] == [
        ("sales_2024-03-01.csv", 2),
        ("sales_2024-03-02.csv", 3),
    ]
    assert [(o.batch_id, o.rows_loaded) for o in second.outcomes] == [
        ("sales_2024-03-01.csv", 5),
        ("sales_2024-03-03.csv", 1),
    ]
    assert third.outcomes == [] and third.flow_run_id is None  # no salesflow-etl run at all
    assert warehouse_rows(shop, "SELECT count(*) FROM sales") == [(9,)]


@pytest.mark.e2e
def test_quality_report_publishes_the_days_as_a_markdown_artifact(
    prefect_server: PrefectServer, shop: Path
) -> None:
    from salesflow.config import load_settings
    from salesflow.flows.etl import run_etl
    from salesflow.flows.scheduled import QUALITY_REPORT_KEY, quality_report_flow

    landing = shop / "landing"
    day_file(landing, date(2024, 3, 1), rows=2)
    day_file(landing, date(2024, 3, 2), rows=30)
    with (landing / "sales_2024-03-02.csv").open("a") as late:
        late.write("X1,2024-03-02,C1,S1,P,C,0,10.50,North\n")  # zero_quantity
    day_file(landing, date(2024, 2, 20), rows=1)  # outside the window

    with api_of(prefect_server):
        run_etl([landing], load_settings())
        state = quality_report_flow(days=2, until=date(2024, 3, 2), return_state=True)
        markdown = state.result()
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[QUALITY_REPORT_KEY]))
            )

    assert markdown.startswith("# salesflow quality report: 2024-03-01 to 2024-03-02\n")
    assert "| 2024-03-01 | 2 | 4 | 42.00 | 0.00 |" in markdown
    assert "| 2024-03-02 | 30 | 60 | 630.00 | 0.00 |" in markdown
    assert "Batches: 2 loaded, 0 unchanged, 0 failed." in markdown
    assert "| `zero_quantity` | 1 |" in markdown
    assert "2024-02-20" not in markdown
    mine = [a for a in artifacts if a.flow_run_id == state.state_details.flow_run_id]
    assert [(a.type, a.data) for a in mine] == [("markdown", markdown)]


@pytest.mark.e2e
def test_salesflow_server_up_serves_the_api_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "salesflow.cli", "server", "up", "--port", str(port)],
        cwd=tmp_path,
        env=fresh_process_env(tmp_path / "prefect-home") | {"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        while not printed or not printed[-1].startswith("Press Ctrl-C"):
            line = process.stdout.readline()
            assert line, f"server up ended early: {printed}"
            printed.append(line.strip())
        process.send_signal(signal.SIGTERM)  # a service manager's stop
        rest, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in printed
    assert process.returncode == 0, err
    assert rest.strip().splitlines()[-1] == "stopping the Prefect server ..."
    assert "Traceback" not in err
