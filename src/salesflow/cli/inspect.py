"""Commands that read without loading: `validate`, `contract`, `rejects`, `query`, `status`.

Each parses its options, calls one library function and prints its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from salesflow.cli.console import (
    ProfileOption,
    WarehouseOption,
    console,
    errors,
    progress_bar,
    shorten,
    user_errors,
)
from salesflow.config import load_settings
from salesflow.errors import UsageError
from salesflow.text import printable

if TYPE_CHECKING:
    from salesflow.dry_run import FileCheck


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
    from salesflow.dry_run import dry_run

    with user_errors():
        settings = load_settings(warehouse=warehouse)
        with progress_bar() as progress:
            bar = progress.add_task("files", total=None, visible=False)
            checks = dry_run(
                paths,
                settings,
                profile,
                planned=lambda count: progress.update(bar, total=count, visible=True),
                starting=lambda source: progress.update(
                    bar, description=escape(printable(source.name))
                ),
                checked=lambda _: progress.update(bar, advance=1),
            )
        console.print(dry_run_table(checks))
        unreadable = [check for check in checks if check.error is not None]
        for check in unreadable:
            errors.print(
                f"[bold red]unreadable:[/] {escape(printable(str(check.error)))}",
                highlight=False,
                soft_wrap=True,
            )
    if unreadable:
        raise typer.Exit(2)
    if any(check.manifest is not None and check.manifest.rows_rejected for check in checks):
        raise typer.Exit(1)


def dry_run_table(checks: list[FileCheck]) -> Table:
    """One line per file: its counts and rejection reasons, or why it is unreadable."""
    table = Table(title="validation (dry run)", title_justify="left")
    table.add_column("file", no_wrap=True)
    for column in ("rows", "valid", "rejected"):
        table.add_column(column, justify="right")
    table.add_column("reasons")
    for check in checks:
        name = escape(printable(check.source.name))
        manifest = check.manifest
        if manifest is None:
            table.add_row(name, "", "", "", f"[red]{shorten(check.problem)}[/]")
            continue
        reasons = ", ".join(f"{code} {n}" for code, n in manifest.reason_counts.items())
        if check.would_fail:
            reasons += f" [red](would fail: {check.reject_share:.1%} rejected)[/]"
        table.add_row(
            name,
            str(manifest.rows_in),
            str(manifest.rows_valid),
            str(manifest.rows_rejected),
            reasons,
        )
    return table


def contract() -> None:
    """Print the data contract: columns, types, reason codes and the rules in force."""
    from salesflow.contract import describe_contract

    with user_errors():
        settings = load_settings()
    described = describe_contract(settings)
    console.print(f"[bold]salesflow data contract[/] version {described.version}")
    columns = Table(title="input columns", title_justify="left")
    for column in ("column", "required", "type", "accepted headers"):
        columns.add_column(column)
    for row in described.columns:
        columns.add_row(*row)
    console.print(columns)
    console.print(
        _pairs("reason codes (sales_rejected.reasons)", ("code", "meaning"), described.reasons)
    )
    console.print(_pairs("rules in force (settings)", ("setting", "value"), described.rules))


def _pairs(title: str, headers: tuple[str, str], rows: Iterable[tuple[str, str]]) -> Table:
    """A two-column table whose first column is a name that must not wrap."""
    table = Table(title=title, title_justify="left")
    table.add_column(headers[0], no_wrap=True)
    table.add_column(headers[1])
    for name, value in rows:
        table.add_row(name, value)
    return table


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

    with user_errors():
        settings = load_settings(warehouse=warehouse)
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


def query(
    sql: Annotated[str, typer.Argument(help='A SQL query, e.g. "SELECT * FROM daily_sales".')],
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(help="Rows shown at most.", min=1)] = 50,
) -> None:
    """Run a read-only SQL query against the warehouse and show the result as a table."""
    from salesflow.warehouse import open_warehouse

    with user_errors():
        if not sql.strip():
            raise UsageError("empty query: give a SQL statement, e.g. 'SELECT * FROM daily_sales'")
        settings = load_settings(warehouse=warehouse)
        names, rows = open_warehouse(settings.warehouse_location).query(sql, limit)
        # Values are data (a batch id is a file name): shown escaped, never run as markup or codes.
        table = Table(*(escape(printable(name)) for name in names))
        for row in rows:
            table.add_row(
                *("" if value is None else escape(printable(str(value))) for value in row)
            )
        console.print(table)


def status(
    limit: Annotated[int, typer.Option(help="Flow runs shown, newest first.", min=1)] = 20,
    warehouse: WarehouseOption = None,
) -> None:
    """Recent salesflow flow runs from the Prefect API, with what each put in the warehouse.

    State, start and duration come from Prefect (PREFECT_API_URL, or the local ephemeral API);
    batches and rows from the warehouse, joined by flow run id, with the salesflow-etl
    subflows of a daily, poll or backfill run counted in their parent's line.
    """
    from salesflow.flows.health import check_prefect
    from salesflow.flows.run_history import recent_runs
    from salesflow.warehouse import open_warehouse

    with user_errors():
        settings = load_settings(warehouse=warehouse)
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
