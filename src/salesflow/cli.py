"""The `salesflow` command line: each command parses, calls one library function, prints with Rich.

User errors become one red line and an exit code (1 for failed batches or rejected rows, 2 for
usage and unreadable input); never a traceback. Prefect is imported only by commands that run it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from salesflow import __version__
from salesflow.backfill import Reprocess
from salesflow.config import CONFIG_FILE_ENV, Settings, load_settings
from salesflow.errors import BatchError, PrefectUnavailableError, SalesflowError, UsageError
from salesflow.profiles import apply_profile, resolve_profile
from salesflow.text import printable

if TYPE_CHECKING:
    from salesflow.backfill import DayPlan
    from salesflow.deployments import DeploymentSpec
    from salesflow.flows.backfill import DayResult
    from salesflow.flows.etl import RunSummary
    from salesflow.warehouse.base import Warehouse

app = typer.Typer(
    name="salesflow",
    help="Sales ETL on Prefect 3: landing files -> validated, transformed, idempotent warehouse.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
errors = Console(stderr=True)


class Runner(StrEnum):
    threads = "threads"
    dask = "dask"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class FileFormat(StrEnum):
    csv = "csv"
    csv_gz = "csv.gz"
    parquet = "parquet"
    jsonl = "jsonl"


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


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn salesflow's own errors into one line on stderr and the error's exit code."""
    try:
        yield
    except SalesflowError as error:
        # Escaped: a message may quote brackets (`[profiles.NAME]`, a file name) Rich would eat,
        # or control characters (a file name's ANSI escape or newline) the terminal would obey.
        errors.print(
            f"[bold red]error:[/] {escape(printable(str(error)))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


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
    from salesflow.logs import escape_logs, use_json_logs

    escape_logs()  # a file name in a log line is shown escaped, text or JSON
    if log_format == LogFormat.json:
        use_json_logs()
    # A scheduler's SIGTERM stops a run like Ctrl-C: the open transaction rolls back, Prefect's
    # ephemeral server shuts down with the process instead of being left behind.
    signal.signal(signal.SIGTERM, _interrupt)


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


ProfileOption = Annotated[
    str | None,
    typer.Option(
        help="Source profile: its column map replaces header matching, its rules apply "
        "(built in: online-retail; more under [profiles.NAME] in salesflow.toml).",
        metavar="NAME",
    ),
]

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        help="DuckDB warehouse file, or postgresql://user@host/db?schema=NAME. "
        "Default: <data_dir>/warehouse.duckdb."
    ),
]


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the daily files into.")],
    start: Annotated[
        str, typer.Option(help="First day, YYYY-MM-DD.", metavar="DATE")
    ] = "2024-01-01",
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

    with _user_errors():
        paths = generate_sales(
            out_dir,
            _parse_date(start, "--start"),
            days,
            rows_per_day,
            seed,
            dirty_ratio,
            format.value,
        )
    console.print(f"wrote {len(paths)} file(s) to {out_dir}")


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a date as YYYY-MM-DD") from None


@app.command()
def run(
    paths: Annotated[
        list[Path], typer.Argument(help="Landing files, or folders of them (read in name order).")
    ],
    warehouse: WarehouseOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Reload batches even when their file is unchanged.")
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
        Runner | None,
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
    with _user_errors():
        if dask_address is not None:
            runner = Runner.dask
        settings = _settings(
            warehouse=warehouse,
            max_workers=max_workers,
            task_runner=runner.value if runner else None,
            dask_address=dask_address,
            landing_dir=landing,
        )
        if profile is not None:  # an unknown name or bad override stops here, before Prefect
            apply_profile(settings, resolve_profile(settings, profile))
        summary = _run_with_progress(
            paths, settings, force, accept_rejects, refresh_cache, profile, report
        )
        _print_run(summary)
        if report is not None and summary.fault is None:
            console.print(f"report: {report.resolve()}", soft_wrap=True, highlight=False)
        _report_failures(summary)


def _report_failures(summary: RunSummary) -> None:
    """One line per failed batch on stderr, and the exit code: 3 with one more line when a
    run-wide fault stopped the run (its batch is not named twice), 1 for failed batches."""
    from salesflow.errors import RunWideError
    from salesflow.manifest import BatchStatus

    for outcome in summary.failed:
        if summary.fault is not None and summary.fault in (outcome.error or ""):
            continue  # said once, below, as the reason the run stopped
        errors.print(
            f"[bold red]failed:[/] {escape(printable(outcome.error or ''))}",
            highlight=False,
            soft_wrap=True,
        )
    if summary.fault is not None:
        not_attempted = summary.count(BatchStatus.NOT_ATTEMPTED)
        errors.print(
            f"[bold red]error:[/] {escape(printable(summary.fault))}; run stopped, "
            f"{not_attempted} batch(es) not attempted",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(RunWideError.exit_code)
    if summary.failed:
        raise typer.Exit(1)


def _run_with_progress(
    paths: list[Path],
    settings: Settings,
    force: bool,
    accept_rejects: bool = False,
    refresh_cache: bool = False,
    profile: str | None = None,
    report: Path | None = None,
) -> RunSummary:
    from salesflow.flows.etl import on_batch_finished, run_etl
    from salesflow.prefect_health import check_prefect, prefect_fault, watching_api
    from salesflow.sources.files import discover_sources

    files = discover_sources(paths)
    # Before Prefect starts anything: an unreachable API, a full Prefect home or a database of
    # another Prefect version is said at once, not after minutes of retries or start-up.
    target = check_prefect()
    with _progress() as progress:
        bar = progress.add_task("batches", total=len(files))

        def advance(outcome: Any) -> None:
            name = escape(printable(outcome.batch_id))
            progress.update(bar, advance=1, description=f"{name} {outcome.status}")

        progress.update(bar, description="starting Prefect")
        with on_batch_finished(advance), watching_api(target.api_url):
            try:
                return run_etl(
                    files,
                    settings,
                    force=force,
                    accept_rejects=accept_rejects,
                    refresh_cache=refresh_cache,
                    profile=profile,
                    report=report,
                )
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


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _print_run(summary: RunSummary) -> None:
    from salesflow.manifest import BatchStatus

    table = Table(title="batches", title_justify="left")
    table.add_column("batch", no_wrap=True)
    table.add_column("status")
    for column in ("rows in", "loaded", "rejected", "amount"):
        table.add_column(column, justify="right")
    if summary.failed:
        table.add_column("error")
    style = {
        BatchStatus.LOADED: "green",
        BatchStatus.SKIPPED: "cyan",
        BatchStatus.FAILED: "red",
        BatchStatus.NOT_ATTEMPTED: "yellow",
    }
    for outcome in summary.outcomes:
        loaded = outcome.status == BatchStatus.LOADED
        cells = [
            escape(printable(outcome.batch_id)),  # a file name: no markup, no control codes
            f"[{style[outcome.status]}]{outcome.status}[/]",
            str(outcome.rows_in) if loaded else "",
            str(outcome.rows_loaded) if loaded else "",
            str(outcome.rows_rejected) if loaded else "",
            _money(outcome.amount_loaded) if loaded else "",
        ]
        if summary.failed:
            cells.append(_shorten(outcome.error or ""))
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"[bold]{summary.count(BatchStatus.LOADED)}[/] loaded, "
        f"[bold]{summary.count(BatchStatus.SKIPPED)}[/] unchanged, "
        f"[bold]{summary.count(BatchStatus.FAILED)}[/] failed; "
        f"rows in {summary.rows_in:,}, loaded {summary.rows_loaded:,}, "
        f"rejected {summary.rows_rejected:,}; warehouse {escape(printable(summary.warehouse))}",
        soft_wrap=True,
    )


def _money(value: Decimal | float | int) -> str:
    return f"{Decimal(value):,.2f}"


def _shorten(text: str, width: int = 70) -> str:
    """`text` for a table cell: control characters escaped, cut to `width`, then escaped for
    Rich markup (after the cut, so no markup escape is cut in half)."""
    text = printable(text)
    return escape(text if len(text) <= width else text[: width - 1] + "…")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Landing files, or folders of them.")],
    warehouse: Annotated[
        str | None,
        typer.Option(help="Warehouse checked for rows other batches already loaded (read only)."),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Dry run: check files against the contract and count rejections by reason; writes nothing.

    Gives the reasons a real run would give, duplicate_in_warehouse included when the warehouse
    exists. Exit code 0 when every row is valid, 1 when rows would be rejected, 2 when a file is
    unreadable.
    """
    from salesflow import stages
    from salesflow.sources.files import discover_sources
    from salesflow.validate import ValidationRules
    from salesflow.warehouse import open_warehouse

    with _user_errors():
        settings = _settings(warehouse=warehouse)
        profile_columns = None
        if profile is not None:
            chosen = resolve_profile(settings, profile)
            settings = apply_profile(settings, chosen)
            profile_columns = chosen.columns
        files = discover_sources(paths)
        rules = ValidationRules.from_settings(settings)
        existing = open_warehouse(settings.warehouse_location)
        table = Table(title="validation (dry run)", title_justify="left")
        table.add_column("file", no_wrap=True)
        for column in ("rows", "valid", "rejected"):
            table.add_column(column, justify="right")
        table.add_column("reasons")
        unreadable: list[str] = []
        rejected_any = False
        with _progress() as progress:
            bar = progress.add_task("files", total=len(files))
            for source in files:
                progress.update(bar, description=escape(printable(source.name)))
                try:
                    manifest = stages.check_source(
                        source, rules, existing, profile, profile_columns, settings.landing_dir
                    )
                except SalesflowError as error:
                    unreadable.append(str(error))
                    problem = error.problem if isinstance(error, BatchError) else str(error)
                    name = escape(printable(source.name))
                    table.add_row(name, "", "", "", f"[red]{_shorten(problem)}[/]")
                else:
                    rejected_any = rejected_any or manifest.rows_rejected > 0
                    reasons = ", ".join(f"{code} {n}" for code, n in manifest.reason_counts.items())
                    share = manifest.rows_rejected / manifest.rows_in if manifest.rows_in else 0
                    if share > settings.max_reject_share:
                        reasons += f" [red](would fail: {share:.1%} rejected)[/]"
                    table.add_row(
                        escape(printable(source.name)),
                        str(manifest.rows_in),
                        str(manifest.rows_valid),
                        str(manifest.rows_rejected),
                        reasons,
                    )
                progress.update(bar, advance=1)
        console.print(table)
        for line in unreadable:
            errors.print(
                f"[bold red]unreadable:[/] {escape(printable(line))}",
                highlight=False,
                soft_wrap=True,
            )
    if unreadable:
        raise typer.Exit(2)
    if rejected_any:
        raise typer.Exit(1)


@app.command()
def contract() -> None:
    """Print the data contract: columns, types, reason codes and the rules in force."""
    from salesflow.contract import describe_contract

    with _user_errors():
        settings = _settings()
    described = describe_contract(settings)
    console.print(f"[bold]salesflow data contract[/] version {described.version}")
    columns = Table(title="input columns", title_justify="left")
    for column in ("column", "required", "type", "accepted headers"):
        columns.add_column(column)
    for row in described.columns:
        columns.add_row(*row)
    console.print(columns)
    reasons = Table(title="reason codes (sales_rejected.reasons)", title_justify="left")
    reasons.add_column("code", no_wrap=True)
    reasons.add_column("meaning")
    for code, meaning in described.reasons:
        reasons.add_row(code, meaning)
    console.print(reasons)
    rules = Table(title="rules in force (settings)", title_justify="left")
    rules.add_column("setting", no_wrap=True)
    rules.add_column("value")
    for name, value in described.rules:
        rules.add_row(name, value)
    console.print(rules)


@app.command()
def rejects(
    batch: Annotated[
        str | None, typer.Option("--batch", help="Only this batch (file name).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Only rows carrying this reason code.")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the rows to this CSV file instead of showing them."),
    ] = None,
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(help="Rows shown at most (not for --export).", min=1)] = 50,
) -> None:
    """Show or export quarantined rows with their reasons.

    Exports are safe to open in a spreadsheet: cells starting with =, +, -, @, a tab or a carriage
    return are prefixed with a quote so they are never run as formulas.
    """
    from salesflow.quarantine import export_rejects, read_rejects
    from salesflow.warehouse import open_warehouse

    with _user_errors():
        settings = _settings(warehouse=warehouse)
        rows = read_rejects(open_warehouse(settings.warehouse_location), batch=batch, reason=reason)
        if export is not None:
            written = export_rejects(rows, export)
            console.print(f"wrote {written:,} rejected row(s) to {export}")
            return
        table = Table(title=f"sales_rejected ({rows.height:,} rows)", title_justify="left")
        for column in ("batch_id", "source_row", "reasons", "raw"):
            table.add_column(column, overflow="fold")
        for row in rows.head(limit).iter_rows(named=True):
            table.add_row(  # a batch id and a raw row are data: shown escaped, never obeyed
                escape(printable(row["batch_id"])),
                str(row["source_row"]),
                ", ".join(row["reasons"]),
                escape(printable(row["raw"] or "")),
            )
        console.print(table)
        if rows.height > limit:
            console.print(f"… {rows.height - limit:,} more; use --limit or --export FILE.csv")


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help='A SQL query, e.g. "SELECT * FROM daily_sales".')],
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(help="Rows shown at most.", min=1)] = 50,
) -> None:
    """Run a read-only SQL query against the warehouse and show the result as a table."""
    from salesflow.warehouse import open_warehouse

    with _user_errors():
        if not sql.strip():
            raise UsageError("empty query: give a SQL statement, e.g. 'SELECT * FROM daily_sales'")
        settings = _settings(warehouse=warehouse)
        names, rows = open_warehouse(settings.warehouse_location).query(sql, limit)
        # Values are data (a batch id is a file name): shown escaped, never run as markup or codes.
        table = Table(*(escape(printable(name)) for name in names))
        for row in rows:
            table.add_row(
                *("" if value is None else escape(printable(str(value))) for value in row)
            )
        console.print(table)


@app.command()
def report(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write. Default: <data_dir>/report.html."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First order date, YYYY-MM-DD.", metavar="DATE")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last order date, YYYY-MM-DD.", metavar="DATE")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write one self-contained HTML report with charts of the warehouse, for a browser.

    Daily net revenue with returns, revenue by region and category, ticket sizes, weekdays,
    rows loaded vs rejected, reject reasons and KPI anomalies; it works offline (no CDN).
    """
    from salesflow.report import write_report
    from salesflow.warehouse import open_warehouse

    with _user_errors():
        settings = _settings(warehouse=warehouse)
        first = _parse_date(start, "--start") if start is not None else None
        last = _parse_date(end, "--end") if end is not None else None
        written = write_report(
            open_warehouse(settings.warehouse_location),
            out if out is not None else settings.data_dir / "report.html",
            first,
            last,
        )
    console.print(f"wrote report {written}", soft_wrap=True, highlight=False)


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.", metavar="DATE")],
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.", metavar="DATE")],
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

    with _user_errors():
        settings = _settings(warehouse=warehouse, max_days_in_flight=max_days_in_flight)
        first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
        plan = plan_backfill(
            landing or settings.landing_dir,
            first,
            last,
            reprocess,
            open_warehouse(settings.warehouse_location),
        )
        _print_plan(plan)
        days = {entry.day: list(entry.files) for entry in plan if entry.run}
        if dry_run or not days:
            console.print("dry run: nothing changed" if dry_run else "nothing to do")
            return
        results = _backfill_with_progress(days, settings, force=reprocess == Reprocess.ALL)
        failed = _print_backfill(results)
    if failed:
        raise typer.Exit(1)


def _print_plan(plan: list[DayPlan]) -> None:
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


def _backfill_with_progress(
    days: dict[date, list[Path]], settings: Settings, force: bool
) -> list[DayResult]:
    from salesflow.flows.backfill import on_day_finished, run_backfill
    from salesflow.prefect_health import check_prefect, prefect_fault, watching_api

    target = check_prefect()  # before Prefect starts: see _run_with_progress
    with _progress() as progress:
        bar = progress.add_task("days", total=len(days))

        def advance(result: DayResult) -> None:
            progress.update(bar, advance=1, description=f"{result.day} done")

        progress.update(bar, description="starting Prefect")
        with on_day_finished(advance), watching_api(target.api_url):
            try:
                return run_backfill(days, settings, force=force)
            except Exception as error:
                fault = prefect_fault(error)
                if fault is None:
                    raise
                raise fault from error


def _print_backfill(results: list[DayResult]) -> bool:
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
                result.day.isoformat(), "", "", "", "", "", "", _shorten(result.error or "")
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
            _shorten("; ".join(o.error or "" for o in summary.failed), 40),
        )
    console.print(table)
    return failed


@app.command()
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
    from salesflow.deployments import deployment_specs, require_server, serve_deployments

    with _user_errors():
        settings = _settings()
        specs = deployment_specs(settings)
        _print_deployments(specs, settings, "served" if not print_only else "would serve")
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


def _print_deployments(specs: list[DeploymentSpec], settings: Settings, title: str) -> None:
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


@app.command()
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
    from salesflow.deployments import deployment_specs, register_deployments, require_server

    with _user_errors():
        settings = _settings(work_pool=pool)
        specs = deployment_specs(settings)
        url = require_server()
        folder = working_dir or Path.cwd().resolve()
        registered = register_deployments(settings, settings.work_pool, create_pool, folder)
        _print_deployments(specs, settings, f"registered for pool {settings.work_pool}")
        for name, deployment_id in registered:
            console.print(f"{name}: {deployment_id}", highlight=False)
        console.print(
            f"on {url}; start a worker: prefect worker start --pool {settings.work_pool}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def status(
    limit: Annotated[int, typer.Option(help="Flow runs shown, newest first.", min=1)] = 20,
    warehouse: WarehouseOption = None,
) -> None:
    """Recent salesflow flow runs from the Prefect API, with what each put in the warehouse.

    State, start and duration come from Prefect (PREFECT_API_URL, or the local ephemeral API);
    batches and rows from the warehouse, joined by flow run id, with the salesflow-etl
    subflows of a daily, poll or backfill run counted in their parent's line.
    """
    from salesflow.prefect_health import check_prefect
    from salesflow.status import recent_runs
    from salesflow.warehouse import open_warehouse

    with _user_errors():
        settings = _settings(warehouse=warehouse)
        located = open_warehouse(settings.warehouse_location)
        check_prefect()  # a dead API or a foreign Prefect database: one line, at once
        runs = recent_runs(located, limit)
        table = Table(title=f"salesflow flow runs ({len(runs)})", title_justify="left")
        for column in ("flow", "run", "state", "started", "took"):
            table.add_column(column, no_wrap=column in ("flow", "run"))
        for column in ("loaded", "failed", "rows", "rejected"):
            table.add_column(column, justify="right")
        for run in runs:
            counts = run.counts
            numbers = (
                [
                    str(counts.loaded),
                    str(counts.failed),
                    f"{counts.rows_loaded:,}",
                    f"{counts.rows_rejected:,}",
                ]
                if counts
                else [""] * 4
            )
            started = run.started_at.astimezone() if run.started_at else None
            table.add_row(
                run.flow_name.removeprefix("salesflow-"),
                run.run_name,
                _state_markup(run.state),
                started.strftime("%m-%d %H:%M") if started else "",
                _duration(run.duration),
                *numbers,
            )
        console.print(table)
        if not runs:
            console.print("no salesflow flow runs yet")


def _state_markup(state: str) -> str:
    colour = {"Completed": "green", "Failed": "red", "Crashed": "red", "Running": "yellow"}
    return f"[{colour[state]}]{state}[/]" if state in colour else state


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


server_app = typer.Typer(
    help="Run the Prefect server salesflow's schedules and workers need.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(server_app, name="server")


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

    with _user_errors():
        start_server(
            _settings(),
            host,
            port,
            db_url,
            echo=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )


oltp_app = typer.Typer(
    help="The shop's PostgreSQL database as a source: create it, fill it, load it incrementally.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(oltp_app, name="oltp")

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="The shop database, postgresql://user@host/db?schema=shop (password from "
        "PGPASSWORD or ~/.pgpass). Default: the oltp_url setting.",
        metavar="URL",
    ),
]


def _shop_url(dsn: str | None, **overrides: Any) -> tuple[Settings, str]:
    settings = _settings(oltp_url=dsn, **overrides)
    if settings.oltp_url is None:
        raise UsageError("no shop database: pass --dsn postgresql://... or set oltp_url")
    return settings, settings.oltp_url


@oltp_app.command("init")
def oltp_init(dsn: DsnOption = None) -> None:
    """Create the shop schema: customers, products, orders, order_items, each with
    [bold]updated_at[/] kept by triggers, and their indexes. Safe to run again."""
    from salesflow.oltp import DEFAULT_SCHEMA, init_shop
    from salesflow.pg_url import PostgresUrl

    with _user_errors():
        _, location = _shop_url(dsn)
        url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        init_shop(url)
    console.print(f"shop schema ready at {url.location}", highlight=False, soft_wrap=True)


@oltp_app.command("seed")
def oltp_seed(
    dsn: DsnOption = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A sales CSV with the canonical header instead of generated sales."
        ),
    ] = None,
    start: Annotated[
        str, typer.Option(help="First generated day, YYYY-MM-DD.", metavar="DATE")
    ] = "2024-01-01",
    days: Annotated[int, typer.Option(help="Days of generated sales.", min=1)] = 31,
    rows_per_day: Annotated[int, typer.Option(help="Order lines per day.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 42,
) -> None:
    """Fill the shop tables from the generator (clean sales) or from a file; rows already
    there (same keys) are left as they are."""
    from salesflow.oltp import DEFAULT_SCHEMA, generated_sales, sales_from_file, seed_shop
    from salesflow.pg_url import PostgresUrl

    with _user_errors():
        _, location = _shop_url(dsn)
        url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        if from_file is not None:
            sales = sales_from_file(from_file)
        else:
            sales = generated_sales(_parse_date(start, "--start"), days, rows_per_day, seed)
        added = seed_shop(url, sales)
    console.print(
        "added " + ", ".join(f"{rows:,} {table}" for table, rows in added.items()),
        highlight=False,
    )


@oltp_app.command("load")
def oltp_load(
    dsn: DsnOption = None,
    warehouse: WarehouseOption = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Extract every day, not only those changed since last time."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Reload days even when their extract is unchanged.")
    ] = False,
    accept_rejects: Annotated[
        bool,
        typer.Option(
            "--accept-rejects",
            help="Load days even when they reject more than max_reject_share of their rows.",
        ),
    ] = False,
) -> None:
    """Load the order days that changed since the last load (the [bold]salesflow-oltp[/] flow).

    Changes are found by [bold]updated_at[/] after the watermark kept in the warehouse, minus
    [bold]oltp_lag_minutes[/]; each changed day is extracted whole and replaces its batch.
    Exit code 0 when every day loaded (or was unchanged), 1 when any failed.
    """
    from salesflow.flows.oltp import run_oltp

    with _user_errors():
        settings, location = _shop_url(dsn, warehouse=warehouse)
        with console.status("loading changed days from the shop database"):
            summary = run_oltp(
                location,
                settings,
                full_refresh=full_refresh,
                force=force,
                accept_rejects=accept_rejects,
            )
        _print_run(summary)
        _report_failures(summary)


@app.command()
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
    from salesflow.sources.generator import generate_sales

    with _user_errors():
        settings = _settings(demo_dir=demo_dir)
        root = settings.demo_dir
        landing = root / "landing"
        settings = _settings(
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
        summary = _run_with_progress([landing], settings, force=False, report=report)
        _print_run(summary)
        from salesflow.warehouse import open_warehouse

        _print_warehouse_overview(open_warehouse(summary.warehouse))
        console.print(
            f"report: [bold]{report.resolve()}[/] (open it in a browser)",
            soft_wrap=True,
            highlight=False,
        )
    if summary.failed:
        raise typer.Exit(1)


def _print_warehouse_overview(warehouse: Warehouse) -> None:
    by_region = warehouse.fetch(
        "SELECT region, count(DISTINCT order_id), sum(quantity), sum(total), "
        "coalesce(sum(-total) FILTER (WHERE quantity < 0), 0) "
        "FROM sales GROUP BY region ORDER BY sum(total) DESC"
    )
    table = Table(title="revenue by region", title_justify="left")
    for column in ("region", "orders", "units", "net revenue", "returns"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region, orders, units, revenue, returns in by_region:
        table.add_row(region, f"{orders:,}", f"{units:,}", _money(revenue), _money(returns))
    console.print(table)
    reasons = warehouse.fetch(
        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM sales_rejected) "
        "GROUP BY reason ORDER BY count(*) DESC, reason"
    )
    if reasons:
        rejected = Table(title="rejected rows by reason", title_justify="left")
        rejected.add_column("reason")
        rejected.add_column("rows", justify="right")
        for reason, count in reasons:
            rejected.add_row(reason, f"{count:,}")
        console.print(rejected)
    (sales,) = warehouse.fetch("SELECT count(*) FROM sales")[0]
    (quarantined,) = warehouse.fetch("SELECT count(*) FROM sales_rejected")[0]
    location = warehouse.location
    console.print(
        f"warehouse [bold]{location}[/]: {sales:,} rows in sales, "
        f"{quarantined:,} in sales_rejected",
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


def run_cli() -> None:  # pragma: no cover - console-script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
