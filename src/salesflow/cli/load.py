"""Commands that put data in the warehouse: `generate`, `run` and `demo`.

Each parses its options, calls one library function and prints the outcome.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from salesflow.cli.console import (
    ProfileOption,
    WarehouseOption,
    console,
    iso_date,
    money,
    print_run,
    progress_bar,
    report_failures,
    user_errors,
)
from salesflow.config import Settings, TaskRunner, load_settings
from salesflow.errors import PrefectUnavailableError
from salesflow.options import RunOptions, apply_run_profile
from salesflow.sources.generator import FileFormat
from salesflow.text import printable

if TYPE_CHECKING:
    from salesflow.overview import WarehouseOverview
    from salesflow.run_summary import RunSummary


def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the daily files into.")],
    start: Annotated[
        date,
        typer.Option(help="First day, YYYY-MM-DD.", metavar="DATE", parser=iso_date("--start")),
    ] = date(2024, 1, 1),
    days: Annotated[int, typer.Option(help="Number of daily files.", min=1)] = 31,
    rows_per_day: Annotated[
        int, typer.Option(help="Rows per file (before duplicates).", min=1)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 42,
    dirty_ratio: Annotated[
        float, typer.Option(help="Share of rows made dirty (every rejection kind), 0-0.5.")
    ] = 0.0,
    format: Annotated[FileFormat, typer.Option("--format", help="File format.")] = FileFormat.csv,
) -> None:
    """Write seeded synthetic sales, one file per day: [bold]sales_YYYY-MM-DD.<ext>[/]."""
    from salesflow.sources.generator import generate_sales

    with user_errors():
        paths = generate_sales(
            out_dir,
            start,
            days,
            rows_per_day,
            seed,
            dirty_ratio,
            format.value,
        )
    console.print(f"wrote {len(paths)} file(s) to {out_dir}")


def run(
    paths: Annotated[
        list[Path], typer.Argument(help="Landing files, or folders of them (read in name order).")
    ],
    warehouse: WarehouseOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Reload batches even when their file is unchanged.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Hash every file to tell whether it changed; by default a file whose size and "
            "modification time match its last load is skipped without reading it.",
        ),
    ] = False,
    max_workers: Annotated[
        int | None, typer.Option(help="Batches processed at once (default from CPU count).", min=1)
    ] = None,
    accept_rejects: Annotated[
        bool,
        typer.Option(
            "--accept-rejects",
            help="Load batches even when they reject more than max_reject_share of their rows.",
        ),
    ] = False,
    refresh_cache: Annotated[
        bool,
        typer.Option(
            "--refresh-cache", help="Recompute stage results instead of reusing cached ones."
        ),
    ] = False,
    profile: ProfileOption = None,
    runner: Annotated[
        TaskRunner | None,
        typer.Option(
            help="Where extract, validate and transform run: threads here, or a Dask cluster "
            "(default: the task_runner setting).",
        ),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="Scheduler of an existing Dask cluster, e.g. tcp://host:8786 (implies "
            "--runner dask); without it --runner dask starts a local cluster.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="After loading, write the HTML report of the warehouse here and link it from "
            "the run's Prefect artifacts.",
            metavar="FILE.html",
        ),
    ] = None,
    landing: Annotated[
        Path | None,
        typer.Option(
            help="Landing root: a batch is its file's path relative to this folder (its "
            "absolute path when it lies elsewhere). Default: the landing_dir setting.",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Load landing files into the warehouse through the [bold]salesflow-etl[/] Prefect flow.

    Exit code 0 when every batch loaded (or was unchanged), 1 when any batch failed, 2 for usage
    errors such as a missing path, 3 when a run-wide fault (a full disk, an unreachable
    warehouse or Prefect API, permission denied) stopped the run.
    """
    with user_errors():
        if dask_address is not None:
            runner = TaskRunner.dask
        settings = load_settings(
            warehouse=warehouse,
            max_workers=max_workers,
            task_runner=runner.value if runner else None,
            dask_address=dask_address,
            landing_dir=landing,
        )
        apply_run_profile(settings, profile)  # an unknown name or bad override stops here
        options = RunOptions(
            force=force,
            verify=verify,
            accept_rejects=accept_rejects,
            refresh_cache=refresh_cache,
            profile=profile,
            report=report,
        )
        summary = run_with_progress(paths, settings, options)
        print_run(summary)
        if report is not None and summary.fault is None:
            console.print(f"report: {report.resolve()}", soft_wrap=True, highlight=False)
        report_failures(summary)


def run_with_progress(paths: list[Path], settings: Settings, options: RunOptions) -> RunSummary:
    """`run_etl` over the files under `paths`, with a progress bar advancing per batch."""
    from salesflow.flows.etl import run_etl
    from salesflow.flows.health import check_prefect, prefect_fault, watching_api
    from salesflow.flows.listeners import on_batch_finished
    from salesflow.sources.files import discover_sources

    files = discover_sources(paths)
    # Before Prefect starts anything: an unreachable API, a full Prefect home or a database of
    # another Prefect version is said at once, not after minutes of retries or start-up.
    target = check_prefect()
    with progress_bar() as progress:
        bar = progress.add_task("batches", total=len(files))

        def advance(outcome: Any) -> None:
            name = escape(printable(outcome.batch_id))
            progress.update(bar, advance=1, description=f"{name} {outcome.status}")

        progress.update(bar, description="starting Prefect")
        with on_batch_finished(advance), watching_api(target.api_url):
            try:
                return run_etl(files, settings, options)
            except Exception as error:
                fault = prefect_fault(error)  # e.g. Prefect's home filled up during the run
                if fault is not None:
                    raise fault from error
                if not isinstance(error, RuntimeError) or "Prefect API" not in str(error):
                    raise
                # The checks passed, so the ephemeral API was only slow to start (a busy
                # machine): transient, a retry may well succeed.
                raise PrefectUnavailableError(
                    f"{error} Retry, or start a server and set PREFECT_API_URL (see the README)."
                ) from None


def demo(
    days: Annotated[int, typer.Option(help="Days of synthetic sales.", min=1)] = 31,
    rows_per_day: Annotated[int, typer.Option(help="Rows per daily file.", min=1)] = 2000,
    dirty_ratio: Annotated[float, typer.Option(help="Share of dirty rows.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    demo_dir: Annotated[Path | None, typer.Option(help="Where the demo works.")] = None,
) -> None:
    """Generate a seeded month of sales with a little dirt and load it on the embedded defaults.

    Runs on Prefect's ephemeral API and a DuckDB file, offline; prints what was loaded, revenue by
    region, and how to query the warehouse. Running it again skips the unchanged files.
    """
    from salesflow.overview import warehouse_overview
    from salesflow.sources.generator import generate_sales
    from salesflow.warehouse import open_warehouse

    with user_errors():
        root = load_settings(demo_dir=demo_dir).demo_dir
        landing = root / "landing"
        settings = load_settings(
            demo_dir=root,
            data_dir=root,
            landing_dir=landing,
            warehouse=str(root / "warehouse.duckdb"),
        )
        console.print(
            f"[bold]salesflow demo[/]: {days} days x {rows_per_day:,} rows into {landing}"
        )
        generate_sales(landing, date(2024, 1, 1), days, rows_per_day, seed, dirty_ratio, "csv")
        report = root / "report.html"
        summary = run_with_progress([landing], settings, RunOptions(report=report))
        print_run(summary)
        print_overview(warehouse_overview(open_warehouse(summary.warehouse)))
        console.print(
            f"report: [bold]{report.resolve()}[/] (open it in a browser)",
            soft_wrap=True,
            highlight=False,
        )
    if summary.failed:
        raise typer.Exit(1)


def print_overview(overview: WarehouseOverview) -> None:
    """Revenue by region, rejections by reason, and how to query the warehouse."""
    table = Table(title="revenue by region", title_justify="left")
    for column in ("region", "orders", "units", "net revenue", "returns"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region in overview.regions:
        table.add_row(
            region.region,
            f"{region.orders:,}",
            f"{region.units:,}",
            money(region.net_revenue),
            money(region.returns),
        )
    console.print(table)
    if overview.rejected_by_reason:
        rejected = Table(title="rejected rows by reason", title_justify="left")
        rejected.add_column("reason")
        rejected.add_column("rows", justify="right")
        for reason, count in overview.rejected_by_reason:
            rejected.add_row(reason, f"{count:,}")
        console.print(rejected)
    location = overview.location
    console.print(
        f"warehouse [bold]{location}[/]: {overview.sales_rows:,} rows in sales, "
        f"{overview.rejected_rows:,} in sales_rejected",
        soft_wrap=True,
    )
    console.print("query it:", soft_wrap=True)
    console.print(
        f'  salesflow query --warehouse {location} "SELECT * FROM daily_sales LIMIT 10"',
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"  python -c \"import duckdb; print(duckdb.connect('{location}', read_only=True)"
        f".sql('FROM daily_sales'))\"",
        soft_wrap=True,
        highlight=False,
    )
