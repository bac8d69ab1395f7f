"""The scheduled deployments: names, schedules and parameters, built from Settings in one place.

Two routes use these specs: `salesflow serve` (one long-running process runs the flows) and the
work-pool route (`salesflow deploy`, or `prefect deploy` on the repository's prefect.yaml, which a
test keeps equal to `render_prefect_yaml` of the default settings), where workers run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import yaml
from prefect.schedules import Cron, Interval, RRule, Schedule

from salesflow.config import Settings
from salesflow.errors import PrefectApiError, UsageError, UserError
from salesflow.flows import scheduled
from salesflow.flows.health import api_problem, check_api_reachable, exit_later

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow

ENTRYPOINT_FILE = "src/salesflow/flows/scheduled.py"
PREFECT_YAML = "prefect.yaml"
TAGS = ("salesflow", "scheduled")
# Intervals count from midnight of a fixed day in the shop time zone, so a 15-minute poll runs at
# :00, :15, :30 and :45 whenever the deployment was registered.
INTERVAL_ANCHOR = datetime(2024, 1, 1)
# How long `serve` gives its runner to stop its flow runs after a stop signal when the API is
# gone (the schedules cannot be paused then): a service manager waits 5-10 s before SIGKILL.
STOP_WITHOUT_API_SECONDS = 3.0


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, under what name, when, and with which parameters."""

    name: str
    function: str  # the flow's function in salesflow/flows/scheduled.py
    schedule: Schedule
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def flow(self) -> Flow[..., Any]:
        found: Flow[..., Any] = getattr(scheduled, self.function)
        return found

    @property
    def flow_name(self) -> str:
        return self.flow.name

    @property
    def full_name(self) -> str:
        """How Prefect names it: `prefect deployment run salesflow-daily/daily`."""
        return f"{self.flow_name}/{self.name}"

    @property
    def entrypoint(self) -> str:
        """File-path entrypoint, relative to the repository root (prefect.yaml)."""
        return f"{ENTRYPOINT_FILE}:{self.function}"

    def describe_schedule(self) -> str:
        """The schedule as an operator reads it, e.g. `cron 0 6 * * *` or `every 15 min`."""
        if self.schedule.cron is not None:
            return f"cron {self.schedule.cron}"
        if self.schedule.interval is not None:
            return f"every {int(self.schedule.interval.total_seconds() // 60)} min"
        return f"rrule {self.schedule.rrule}"


def deployment_specs(settings: Settings) -> list[DeploymentSpec]:
    """The three scheduled deployments, their schedules in the shop time zone.

    A cron or RRule Prefect cannot read stops here with one line naming the setting.
    """
    zone = settings.timezone
    return [
        DeploymentSpec(
            "daily",
            "daily_flow",
            _schedule("daily_cron", lambda: Cron(settings.daily_cron, timezone=zone)),
            {"fail_if_missing": True},
        ),
        DeploymentSpec(
            "poll",
            "poll_flow",
            Interval(
                settings.poll_interval_minutes * 60,
                anchor_date=INTERVAL_ANCHOR.replace(tzinfo=ZoneInfo(zone)),
                timezone=zone,
            ),
        ),
        DeploymentSpec(
            "quality-report",
            "quality_report_flow",
            _schedule("quality_rrule", lambda: RRule(settings.quality_rrule, timezone=zone)),
            {"days": 7},
        ),
    ]


def _schedule(setting: str, make: Any) -> Schedule:
    try:
        built: Schedule = make()
    except ValueError as error:
        raise UsageError(f"bad configuration: {setting}: {error}") from None
    return built


def build_deployments(
    settings: Settings, work_pool: str | None = None, working_dir: Path | None = None
) -> list[RunnerDeployment]:
    """Prefect deployments of the specs: served when `work_pool` is None, else for that pool.

    Entrypoints are module paths (`salesflow.flows.scheduled.daily_flow`): the installed package
    is importable wherever salesflow runs, so neither route needs code storage or a checkout.
    A process worker runs each flow in a temporary folder unless told otherwise, so pool
    deployments carry `working_dir` (where salesflow.toml and a relative data_dir resolve).
    """
    from prefect.deployments.runner import EntrypointType, RunnerDeployment

    job_variables = {"working_dir": str(working_dir)} if work_pool and working_dir else None
    deployments = []
    for spec in deployment_specs(settings):
        deployment = cast(
            RunnerDeployment,
            spec.flow.to_deployment(
                name=spec.name,
                schedules=[spec.schedule],
                parameters=spec.parameters,
                tags=list(TAGS),
                work_pool_name=work_pool,
                job_variables=job_variables,
                entrypoint_type=EntrypointType.MODULE_PATH,
            ),
        )
        if work_pool is None:
            # Prefect updates only the fields set explicitly: a deployment registered for a
            # pool before would keep it, and a worker would run its schedules too.
            deployment.work_pool_name = None
            deployment.job_variables = {}
        deployments.append(deployment)
    return deployments


def require_server() -> str:
    """The URL of a reachable Prefect server; one clear error line otherwise.

    Prefect's ephemeral API lives and dies with one command and runs neither the scheduler nor
    workers, so schedules need a real server: none configured is the user's to fix (exit 1); one
    configured where nothing answers is a PrefectApiError (exit 3), said at once by a plain HTTP
    request rather than after the client's retries.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise UserError(
            "no Prefect server: set PREFECT_API_URL to a running one (start it with `salesflow "
            "server up`); Prefect's ephemeral API cannot run schedules or workers"
        )
    check_api_reachable(url)
    return url


def serve_deployments(
    settings: Settings,
    on_ready: Callable[[], None] = lambda: None,
    api_url: str | None = None,
) -> None:
    """Serve the deployments from this process until Ctrl-C or SIGTERM.

    What `prefect.serve` does, with one change: Ctrl-C and SIGTERM (a service manager's stop),
    whenever they come, ask the runner to stop from inside its event loop, so it leaves its task
    groups normally and its shutdown pauses the schedules. Prefect's own SIGTERM handler calls
    sys.exit and a bare KeyboardInterrupt cancels the runner's tasks: either can skip or cut the
    pause, leaving schedules that fire while nothing serves them. A signal during registration
    stops the runner as soon as it has started. A second signal stops at once.

    When the signal comes and the server at `api_url` no longer answers, the pause cannot be
    made: Prefect's client would retry it for many minutes, so the runner gets
    `STOP_WITHOUT_API_SECONDS` to stop its flow runs, then the process ends with a
    PrefectApiError (exit 3) saying the schedules were not paused.
    """
    import asyncio
    import signal
    import threading

    from prefect.runner import Runner

    class GracefulRunner(Runner):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stop_requested = False
            self.serving_loop: asyncio.AbstractEventLoop | None = None
            self.stop_task: asyncio.Task[None] | None = None
            self.api_lost: PrefectApiError | None = None
            self.deadline: threading.Timer | None = None

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            problem = api_problem(api_url, timeout=1.0) if api_url else None
            if api_url and problem is not None:
                self.api_lost = PrefectApiError(
                    f"stopped serving, schedules NOT paused: Prefect API unreachable at "
                    f"{api_url} ({problem}); start the server again, then `salesflow serve` "
                    "(or pause the schedules in the UI)"
                )
                self.deadline = exit_later(STOP_WITHOUT_API_SECONDS, self.api_lost)
            if self.serving_loop is not None:
                self.serving_loop.call_soon_threadsafe(self.schedule_stop)

        def schedule_stop(self) -> None:
            if self.stop_task is None:
                self.stop_task = asyncio.get_running_loop().create_task(self.stop_once_started())

        async def stop_once_started(self) -> None:
            while not self.started:
                await asyncio.sleep(0.05)
            await self.astop()

        async def serve(self, deployments: list[RunnerDeployment]) -> None:
            self.serving_loop = asyncio.get_running_loop()
            for deployment in deployments:
                await self.aadd_deployment(deployment)
            if self.stop_requested:
                self.schedule_stop()
            await self.start()  # takes SIGTERM for its own handle_sigterm: ours

    runner = GracefulRunner(pause_on_shutdown=True)
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, runner.handle_sigterm)
    on_ready()  # from here on, a signal stops serving cleanly
    asyncio.run(runner.serve(build_deployments(settings)))
    if runner.api_lost is not None:  # the runner stopped within the deadline, unpaused
        if runner.deadline is not None:
            runner.deadline.cancel()
        raise runner.api_lost


def register_deployments(
    settings: Settings, work_pool: str, create_pool: bool, working_dir: Path
) -> list[tuple[str, str]]:
    """Register the deployments against `work_pool` (a process pool); (full name, id) of each."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    specs = deployment_specs(settings)
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(work_pool)
        except ObjectNotFound:
            if not create_pool:
                raise UsageError(
                    f"work pool {work_pool!r} does not exist; run with --create-pool or "
                    f"`prefect work-pool create {work_pool} --type process`"
                ) from None
            pool = client.create_work_pool(
                WorkPoolCreate(
                    name=work_pool,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
    if pool.type != "process":
        raise UsageError(
            f"work pool {work_pool!r} is of type {pool.type!r}; salesflow deploys to a process pool"
        )
    deployments = build_deployments(settings, work_pool=work_pool, working_dir=working_dir)
    return [
        (spec.full_name, str(deployment.apply(work_pool_name=work_pool)))
        for spec, deployment in zip(specs, deployments, strict=True)
    ]


def render_prefect_yaml(settings: Settings) -> str:
    """prefect.yaml for `prefect deploy --all` from the repository root (the work-pool route).

    It has no pull section on purpose: `prefect deploy` then records the folder it ran in as the
    flow runs' working directory, so the committed file holds no absolute path.
    """
    deployments = []
    for spec in deployment_specs(settings):
        deployments.append(
            {
                "name": spec.name,
                "entrypoint": spec.entrypoint,
                "tags": list(TAGS),
                "parameters": spec.parameters,
                "work_pool": {"name": settings.work_pool},
                "schedules": [_schedule_yaml(spec.schedule)],
            }
        )
    pool = settings.work_pool
    header = (
        "# The work-pool route of salesflow's scheduled deployments (README: 'Schedules and\n"
        "# deployments'). Generated from the default settings by `python -m\n"
        "# salesflow.flows.deployments > prefect.yaml`; a test keeps the two equal. From the\n"
        "# repository root, against a Prefect server (PREFECT_API_URL):\n"
        f"#   prefect work-pool create {pool} --type process\n"
        "#   prefect deploy --all\n"
        f"#   prefect worker start --pool {pool}\n"
    )
    body = yaml.safe_dump(
        {"name": "salesflow", "build": None, "push": None, "deployments": deployments},
        sort_keys=False,
        width=100,
    )
    return header + body


def _schedule_yaml(schedule: Schedule) -> dict[str, Any]:
    if schedule.cron is not None:
        return {"cron": schedule.cron, "timezone": schedule.timezone}
    if schedule.interval is not None:
        return {
            "interval": int(schedule.interval.total_seconds()),
            "anchor_date": schedule.anchor_date.isoformat(),
            "timezone": schedule.timezone,
        }
    return {"rrule": schedule.rrule, "timezone": schedule.timezone}


def default_settings() -> Settings:
    """The defaults alone, whatever the environment or salesflow.toml say: the committed file."""
    return Settings.model_construct()


if __name__ == "__main__":  # pragma: no cover - regenerates prefect.yaml
    print(render_prefect_yaml(default_settings()), end="")
