"""Commands for scheduled running: `serve`, `deploy` and `server up`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from salesflow.cli.console import console, user_errors
from salesflow.config import Settings, load_settings

if TYPE_CHECKING:
    from salesflow.flows.deployments import DeploymentSpec

server_app = typer.Typer(
    help="Run the Prefect server salesflow's schedules and workers need.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def serve(
    print_only: Annotated[
        bool,
        typer.Option("--print", help="Show what would be served (a table) and exit."),
    ] = False,
) -> None:
    """Serve the scheduled deployments from this process until Ctrl-C or SIGTERM.

    [bold]salesflow-daily/daily[/] loads yesterday's files on [bold]daily_cron[/],
    [bold]salesflow-poll/poll[/] loads new landing files every [bold]poll_interval_minutes[/],
    [bold]salesflow-quality-report/quality-report[/] publishes a report on
    [bold]quality_rrule[/]; all in the shop [bold]timezone[/]. Needs a Prefect server
    (PREFECT_API_URL): the schedules fire on it and this process runs the flow runs. On shutdown
    the schedules are paused until the next serve.
    """
    from salesflow.flows.deployments import deployment_specs, require_server, serve_deployments

    with user_errors():
        settings = load_settings()
        specs = deployment_specs(settings)
        print_deployments(specs, settings, "served" if not print_only else "would serve")
        if print_only:
            return
        url = require_server()
        serve_deployments(
            settings,
            on_ready=lambda: console.print(
                f"serving on {url}; Ctrl-C to stop", highlight=False, soft_wrap=True
            ),
            api_url=url,
        )
    console.print("stopped serving; schedules paused")


def print_deployments(specs: list[DeploymentSpec], settings: Settings, title: str) -> None:
    """One line per deployment: name, flow, schedule, time zone and parameters."""
    table = Table(title=f"deployments ({title})", title_justify="left")
    for column in ("name", "flow", "schedule", "time zone", "parameters"):
        table.add_column(column, no_wrap=column in ("name", "flow"), overflow="fold")
    for spec in specs:
        parameters = ", ".join(f"{key}={value}" for key, value in spec.parameters.items())
        table.add_row(
            spec.name,
            spec.flow_name,
            spec.describe_schedule(),
            settings.timezone,
            parameters or "(defaults)",
        )
    console.print(table)


def deploy(
    pool: Annotated[
        str | None,
        typer.Option("--pool", help="Process work pool. Default: the work_pool setting."),
    ] = None,
    create_pool: Annotated[
        bool,
        typer.Option(
            "--create-pool/--no-create-pool", help="Create the process work pool if missing."
        ),
    ] = True,
    working_dir: Annotated[
        Path | None,
        typer.Option(
            "--working-dir",
            help="Folder the worker runs the flows in, on the worker's machine. Default: here.",
        ),
    ] = None,
) -> None:
    """Register the scheduled deployments on the Prefect server for a process work pool.

    The route for workers: [bold]prefect worker start --pool salesflow-process[/] then runs the
    flows in the working folder (where salesflow.toml and a relative data_dir resolve), on any
    machine where salesflow is installed. Same names, schedules and parameters as
    [bold]salesflow serve[/] and prefect.yaml. Needs a Prefect server (PREFECT_API_URL);
    Prefect's ephemeral API cannot run workers.
    """
    from salesflow.flows.deployments import (
        deployment_specs,
        register_deployments,
        require_server,
    )

    with user_errors():
        settings = load_settings(work_pool=pool)
        specs = deployment_specs(settings)
        url = require_server()
        folder = working_dir or Path.cwd().resolve()
        registered = register_deployments(settings, settings.work_pool, create_pool, folder)
        print_deployments(specs, settings, f"registered for pool {settings.work_pool}")
        for name, deployment_id in registered:
            console.print(f"{name}: {deployment_id}", highlight=False)
        console.print(
            f"on {url}; start a worker: prefect worker start --pool {settings.work_pool}",
            highlight=False,
            soft_wrap=True,
        )


@server_app.command("up")
def server_up(
    port: Annotated[int, typer.Option(help="Port of the API and UI.", min=1, max=65535)] = 4200,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="Prefect's database, e.g. postgresql://user:password@host/prefect. "
            "Default: the prefect_db_url setting, else SQLite in PREFECT_HOME.",
        ),
    ] = None,
) -> None:
    """Start a Prefect server (API and UI) in the foreground until Ctrl-C.

    Point clients at it with the PREFECT_API_URL it prints; use PostgreSQL for production.
    """
    from salesflow.server import server_up as start_server

    with user_errors():
        start_server(
            load_settings(),
            host,
            port,
            db_url,
            echo=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )
