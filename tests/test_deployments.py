"""Deployments: one set of specs from Settings feeds `serve`, `salesflow deploy` and prefect.yaml,
and both work-pool routes end with a worker completing a run on a real Prefect server."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from typer.testing import CliRunner

from salesflow import cli
from salesflow.config import load_settings
from salesflow.errors import UsageError
from salesflow.flows.deployments import (
    PREFECT_YAML,
    default_settings,
    deployment_specs,
    render_prefect_yaml,
)
from salesflow.server import PrefectServer, free_port
from tests.conftest import REPO, fresh_process_env, run_salesflow
from tests.test_serve import (
    DEPLOYMENTS,
    client_of,
    day_file,
    final_run,
    rule_of,
    salesflow_env,
    warehouse_rows,
)

runner = CliRunner()


def test_the_committed_prefect_yaml_is_rendered_from_the_default_settings() -> None:
    committed = (REPO / PREFECT_YAML).read_text(encoding="utf-8")

    assert committed == render_prefect_yaml(default_settings())
    assert committed == render_prefect_yaml(load_settings())  # no environment, no toml


def test_names_schedules_and_time_zone_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFLOW_TIMEZONE", "America/New_York")
    monkeypatch.setenv("SALESFLOW_DAILY_CRON", "15 4 * * 1-5")
    monkeypatch.setenv("SALESFLOW_POLL_INTERVAL_MINUTES", "5")
    monkeypatch.setenv("SALESFLOW_QUALITY_RRULE", "FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    monkeypatch.setenv("SALESFLOW_WORK_POOL", "night-shift")
    settings = load_settings()

    specs = deployment_specs(settings)
    rendered = yaml.safe_load(render_prefect_yaml(settings))

    assert [spec.full_name for spec in specs] == list(DEPLOYMENTS)
    assert [spec.describe_schedule() for spec in specs] == [
        "cron 15 4 * * 1-5",
        "every 5 min",
        "rrule FREQ=DAILY;BYHOUR=9;BYMINUTE=0",
    ]
    assert [d["schedules"] for d in rendered["deployments"]] == [
        [{"cron": "15 4 * * 1-5", "timezone": "America/New_York"}],
        [
            {
                "interval": 300,
                "anchor_date": "2024-01-01T00:00:00-05:00",
                "timezone": "America/New_York",
            }
        ],
        [{"rrule": "FREQ=DAILY;BYHOUR=9;BYMINUTE=0", "timezone": "America/New_York"}],
    ]
    assert [d["entrypoint"] for d in rendered["deployments"]] == [
        "src/salesflow/flows/scheduled.py:daily_flow",
        "src/salesflow/flows/scheduled.py:poll_flow",
        "src/salesflow/flows/scheduled.py:quality_report_flow",
    ]
    assert {d["work_pool"]["name"] for d in rendered["deployments"]} == {"night-shift"}
    assert [d["parameters"] for d in rendered["deployments"]] == [
        {"fail_if_missing": True},
        {},
        {"days": 7},
    ]
    for entry in rendered["deployments"]:
        assert (REPO / entry["entrypoint"].split(":")[0]).is_file()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("DAILY_CRON", "61 * * * *", 'daily_cron: Invalid cron string: "61 * * * *"'),
        ("QUALITY_RRULE", "FREQ=SOMETIMES", 'quality_rrule: Invalid RRule string "FREQ=SOMETIMES"'),
    ],
)
def test_a_schedule_prefect_cannot_read_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"SALESFLOW_{setting}", value)

    with pytest.raises(UsageError) as raised:
        deployment_specs(load_settings())
    result = runner.invoke(cli.app, ["serve", "--print"])

    assert str(raised.value).startswith(f"bad configuration: {message}")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: bad configuration: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_print_shows_what_would_be_served_and_needs_no_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFLOW_TIMEZONE", "Europe/Madrid")
    monkeypatch.setattr(cli.console, "width", 160)

    result = runner.invoke(cli.app, ["serve", "--print"])

    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    cells = [[cell.strip() for cell in row.strip("│ ").split("│")] for row in rows]
    assert cells == [
        ["daily", "salesflow-daily", "cron 0 6 * * *", "Europe/Madrid", "fail_if_missing=True"],
        ["poll", "salesflow-poll", "every 15 min", "Europe/Madrid", "(defaults)"],
        [
            "quality-report",
            "salesflow-quality-report",
            "rrule FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=0",
            "Europe/Madrid",
            "days=7",
        ],
    ]


@pytest.mark.parametrize("command", ["deploy", "serve"])
def test_without_a_server_deploy_and_serve_say_so_in_one_line(tmp_path: Path, command: str) -> None:
    unset = run_salesflow(tmp_path, fresh_process_env(tmp_path / "home"), command)
    closed_port = free_port()
    unreachable = run_salesflow(
        tmp_path,
        fresh_process_env(tmp_path / "home")
        | {"PREFECT_API_URL": f"http://127.0.0.1:{closed_port}/api"},
        command,
    )

    assert unset.returncode == 1
    assert unset.stderr.strip() == (
        "error: no Prefect server: set PREFECT_API_URL to a running one (start it with "
        "`salesflow server up`); Prefect's ephemeral API cannot run schedules or workers"
    )
    assert unreachable.returncode == 3  # a run-wide fault
    (line,) = unreachable.stderr.strip().splitlines()
    assert line == (
        f"error: Prefect API unreachable at http://127.0.0.1:{closed_port}/api (connection "
        "refused); start the server (`salesflow server up`) or fix PREFECT_API_URL (unset it to "
        "use Prefect's ephemeral API)"
    )


def _worker_runs_once(env: dict[str, str], pool: str, cwd: Path) -> None:
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr


@pytest.mark.e2e
def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_completes_a_run(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = salesflow_env(prefect_server, tmp_path)
    day_file(tmp_path / "landing", date(2024, 3, 1), rows=2)
    day_file(tmp_path / "landing", date(2024, 3, 2), rows=3)
    prefect = [sys.executable, "-m", "prefect"]
    pool = ["work-pool", "create", "salesflow-process", "--type", "process", "--overwrite"]
    created = subprocess.run(
        [*prefect, *pool], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert created.returncode == 0, created.stdout + created.stderr

    deployed = subprocess.run(
        [*prefect, "deploy", "--all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with client_of(prefect_server) as client:
        daily, poll, report = (client.read_deployment_by_name(name) for name in DEPLOYMENTS)
        assert daily.entrypoint == "src/salesflow/flows/scheduled.py:daily_flow"
        assert daily.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        assert {d.work_pool_name for d in (daily, poll, report)} == {"salesflow-process"}
        assert [s.schedule for s in daily.schedules] == [
            CronSchedule(cron="0 6 * * *", timezone="UTC")
        ]
        assert [s.schedule for s in poll.schedules] == [
            IntervalSchedule(
                interval=timedelta(minutes=15),
                anchor_date=datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC")),
                timezone="UTC",
            )
        ]
        (rrule,) = [s.schedule for s in report.schedules]
        assert isinstance(rrule, RRuleSchedule)
        assert (rule_of(rrule), rrule.timezone) == (
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=0",
            "UTC",
        )
        for deployment in (daily, poll, report):  # only the run below is due for the worker
            client.pause_deployment(deployment.id)
        run = client.create_flow_run_from_deployment(daily.id, parameters={"day": "2024-03-02"})

        _worker_runs_once(env, "salesflow-process", tmp_path)

        finished = final_run(client, run.id)
    assert finished.state is not None and finished.state.is_completed(), finished.state
    assert warehouse_rows(tmp_path, "SELECT batch_id, rows_loaded FROM batches") == [
        ("sales_2024-03-02.csv", 3)
    ]


@pytest.mark.e2e
def test_salesflow_deploy_creates_the_pool_and_a_worker_runs_in_the_deploying_folder(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # Relative folders, as in a salesflow.toml: they resolve in the folder deploy ran in.
    env = salesflow_env(
        prefect_server, tmp_path, SALESFLOW_DATA_DIR="data", SALESFLOW_LANDING_DIR="landing"
    )
    day_file(project / "landing", date(2024, 3, 1), rows=2)
    missing_pool = run_salesflow(project, env, "deploy", "--pool", "nowhere", "--no-create-pool")

    deployed = run_salesflow(project, env, "deploy", "--pool", "salesflow-deploy-test")

    assert missing_pool.returncode == 2
    assert missing_pool.stderr.strip() == (
        "error: work pool 'nowhere' does not exist; run with --create-pool or "
        "`prefect work-pool create nowhere --type process`"
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "prefect worker start --pool salesflow-deploy-test" in deployed.stdout
    with client_of(prefect_server) as client:
        assert client.read_work_pool("salesflow-deploy-test").type == "process"
        daily, poll, report = (client.read_deployment_by_name(name) for name in DEPLOYMENTS)
        assert [d.entrypoint for d in (daily, poll, report)] == [
            "salesflow.flows.scheduled.daily_flow",
            "salesflow.flows.scheduled.poll_flow",
            "salesflow.flows.scheduled.quality_report_flow",
        ]
        assert {d.work_pool_name for d in (daily, poll, report)} == {"salesflow-deploy-test"}
        assert daily.job_variables == {"working_dir": str(project.resolve())}
        assert [s.schedule for s in daily.schedules] == [
            CronSchedule(cron="0 6 * * *", timezone="UTC")
        ]
        for deployment in (daily, poll, report):
            client.pause_deployment(deployment.id)
        run = client.create_flow_run_from_deployment(daily.id, parameters={"day": "2024-03-01"})

        _worker_runs_once(env, "salesflow-deploy-test", tmp_path)  # the worker runs elsewhere

        finished = final_run(client, run.id)
    assert finished.state is not None and finished.state.is_completed(), finished.state
    assert warehouse_rows(project, "SELECT batch_id, rows_loaded FROM batches") == [
        ("sales_2024-03-01.csv", 2)
    ]
