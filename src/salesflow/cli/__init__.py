"""The `salesflow` command line: each command parses, calls one library function, prints with Rich.

User errors become one red line and an exit code (1 for failed batches or rejected rows, 2 for
usage and unreadable input); never a traceback. Prefect is imported only by commands that run it.
The commands live in one module per group; this one builds the app and registers them in the
order `--help` lists them.
"""

from __future__ import annotations

import os
import signal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from salesflow import __version__
from salesflow.cli import backfill, inspect, load, oltp, render, schedule
from salesflow.cli.console import console
from salesflow.config import CONFIG_FILE_ENV

__all__ = ["app", "console"]

app = typer.Typer(
    name="salesflow",
    help="Sales ETL on Prefect 3: landing files -> validated, transformed, idempotent warehouse.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _quiet_prefect(verbose: bool) -> None:
    """Prefect logs still reach its API (and UI); the console shows them only with --verbose."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "CRITICAL"
    )
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # Prefect's internal services (events, logs to the API) log their failures through their own
    # stderr handler: with a server gone mid-run, screens of them around the one line that counts.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL", "INFO" if verbose else "CRITICAL")
    # Several runs starting at once on a busy machine each start an ephemeral API: give it time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Processes sharing one ephemeral API share its SQLite file, which answers 503 ("database is
    # locked") when many write at once; Prefect's client retries those with backoff. Five tries
    # were seen to run out with eight overlapping runs on a busy 2-core machine.
    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "10")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _version(value: bool) -> None:
    if value:
        console.print(f"salesflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"Settings file (TOML); default ./salesflow.toml, or ${CONFIG_FILE_ENV}.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's run logs on the console.")
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="text: Prefect's logs stay in its API (and on the console with -v); json: also "
            "every log record as one JSON line on stderr, for log shippers.",
        ),
    ] = LogFormat.text,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """salesflow loads daily sales files into a warehouse analysts can trust.

    Every input row ends in exactly one place: the [bold]sales[/] table or [bold]sales_rejected[/]
    with reason codes. Re-running anything leaves the warehouse identical.
    """
    if config is not None:
        os.environ[CONFIG_FILE_ENV] = str(config)
    _quiet_prefect(verbose)
    from salesflow.flows.json_logs import use_json_logs
    from salesflow.logs import escape_logs

    escape_logs()  # a file name in a log line is shown escaped, text or JSON
    if log_format == LogFormat.json:
        use_json_logs()
    # A scheduler's SIGTERM stops a run like Ctrl-C: the open transaction rolls back, Prefect's
    # ephemeral server shuts down with the process instead of being left behind.
    signal.signal(signal.SIGTERM, _interrupt)


for command in (
    load.generate,
    load.run,
    inspect.validate,
    inspect.contract,
    inspect.rejects,
    inspect.query,
    render.report,
    backfill.backfill,
    schedule.serve,
    schedule.deploy,
    inspect.status,
):
    app.command()(command)
app.add_typer(schedule.server_app, name="server")
app.add_typer(oltp.oltp_app, name="oltp")
app.command()(load.demo)


def run_cli() -> None:  # pragma: no cover - console-script shim
    app()
