"""`salesflow backfill`: plan a range of days from the warehouse, then load the days to run."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from salesflow.backfill import Reprocess
from salesflow.cli.console import (
    WarehouseOption,
    console,
    iso_date,
    progress_bar,
    shorten,
    user_errors,
)
from salesflow.config import Settings, load_settings
from salesflow.options import RunOptions

if TYPE_CHECKING:
    from salesflow.backfill import DayPlan
    from salesflow.flows.backfill import DayResult


def backfill(
    start: Annotated[
        date,
        typer.Option(help="First day, YYYY-MM-DD.", metavar="DATE", parser=iso_date("--start")),
    ],
    end: Annotated[
        date,
        typer.Option(
            help="Last day (inclusive), YYYY-MM-DD.", metavar="DATE", parser=iso_date("--end")
        ),
    ],
    landing: Annotated[
        Path | None,
        typer.Option(help="Folder of daily files (names carry YYYY-MM-DD). Default: landing_dir."),
    ] = None,
    reprocess: Annotated[
        Reprocess,
        typer.Option(
            help="missing: days not loaded yet; failed: days that failed; all: every day."
        ),
    ] = Reprocess.MISSING,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and change nothing.")
    ] = False,
    warehouse: WarehouseOption = None,
    max_days_in_flight: Annotated[
        int | None, typer.Option(help="Days loaded at once (default 2).", min=1)
    ] = None,
) -> None:
    """Load a range of days, one salesflow-etl flow run per day, under one backfill flow run.

    The plan comes from the warehouse's batches table: interrupted (Ctrl-C, a kill), the same
    command continues where it stopped. Exit code 1 when any day or batch failed.
    """
    from salesflow.backfill import plan_backfill
    from salesflow.warehouse import open_warehouse

    with user_errors():
        settings = load_settings(warehouse=warehouse, max_days_in_flight=max_days_in_flight)
        plan = plan_backfill(
            landing or settings.landing_dir,
            start,
            end,
            reprocess,
            open_warehouse(settings.warehouse_location),
        )
        print_plan(plan)
        days = {entry.day: list(entry.files) for entry in plan if entry.run}
        if dry_run or not days:
            console.print("dry run: nothing changed" if dry_run else "nothing to do")
            return
        results = backfill_with_progress(days, settings, force=reprocess == Reprocess.ALL)
        failed = print_backfill(results)
    if failed:
        raise typer.Exit(1)


def print_plan(plan: list[DayPlan]) -> None:
    """One line per day: its files, what the warehouse holds of it, run or skip."""
    table = Table(title="backfill plan", title_justify="left")
    for column in ("day", "files", "in warehouse", "action"):
        table.add_column(column, no_wrap=True)
    for entry in plan:
        table.add_row(
            entry.day.isoformat(),
            str(len(entry.files)),
            entry.state,
            "[bold]run[/]" if entry.run else "skip",
        )
    console.print(table)


def backfill_with_progress(
    days: dict[date, list[Path]], settings: Settings, force: bool
) -> list[DayResult]:
    """`run_backfill` with a progress bar advancing per day."""
    from salesflow.flows.backfill import on_day_finished, run_backfill
    from salesflow.flows.health import check_prefect, prefect_fault, watching_api

    target = check_prefect()  # before Prefect starts: see load.run_with_progress
    with progress_bar() as progress:
        bar = progress.add_task("days", total=len(days))

        def advance(result: DayResult) -> None:
            progress.update(bar, advance=1, description=f"{result.day} done")

        progress.update(bar, description="starting Prefect")
        with on_day_finished(advance), watching_api(target.api_url):
            try:
                return run_backfill(days, settings, RunOptions(force=force))
            except Exception as error:
                fault = prefect_fault(error)
                if fault is None:
                    raise
                raise fault from error


def print_backfill(results: list[DayResult]) -> bool:
    """The summary table; True when anything failed."""
    from salesflow.manifest import BatchStatus

    table = Table(title="backfill", title_justify="left")
    table.add_column("day")
    for column in ("loaded", "unchanged", "failed", "rows in", "rows loaded", "rejected"):
        table.add_column(column, justify="right")
    table.add_column("error")
    failed = False
    for result in results:
        summary = result.summary
        if summary is None:
            failed = True
            table.add_row(
                result.day.isoformat(), "", "", "", "", "", "", shorten(result.error or "")
            )
            continue
        failed = failed or bool(summary.failed)
        table.add_row(
            result.day.isoformat(),
            str(summary.count(BatchStatus.LOADED)),
            str(summary.count(BatchStatus.SKIPPED)),
            str(summary.count(BatchStatus.FAILED)),
            f"{summary.rows_in:,}",
            f"{summary.rows_loaded:,}",
            f"{summary.rows_rejected:,}",
            shorten("; ".join(o.error or "" for o in summary.failed), 40),
        )
    console.print(table)
    return failed
