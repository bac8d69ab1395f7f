"""What every command shares: the Rich consoles, error mapping to exit codes, progress bars,
the run summary table, money formatting and the option types several commands declare."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from salesflow.errors import SalesflowError
from salesflow.text import printable

if TYPE_CHECKING:
    from salesflow.run_summary import RunSummary

console = Console()
errors = Console(stderr=True)

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


def iso_date(option: str) -> Callable[[str], date]:
    """The parser of a YYYY-MM-DD option: a bad date is one line naming `option`, exit 2 (Typer's
    own date type would print a usage panel instead)."""

    def parse(text: str | date) -> date:
        if isinstance(text, date):  # the declared default
            return text
        try:
            return date.fromisoformat(text)
        except ValueError:
            errors.print(
                f"[bold red]error:[/] {escape(printable(f'{option} {text!r}'))}: "
                "expected a date as YYYY-MM-DD",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return parse


@contextmanager
def user_errors() -> Iterator[None]:
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


def progress_bar() -> Progress:
    """The one progress bar style of every long command."""
    return Progress(
        TextColumn("[progress.description]{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def money(value: Decimal | float | int) -> str:
    """An amount with thousands separators and two decimals."""
    return f"{Decimal(value):,.2f}"


def shorten(text: str, width: int = 70) -> str:
    """`text` for a table cell: control characters escaped, cut to `width`, then escaped for
    Rich markup (after the cut, so no markup escape is cut in half)."""
    text = printable(text)
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def print_run(summary: RunSummary) -> None:
    """The batches table of one run and its one-line totals."""
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
            money(outcome.amount_loaded) if loaded else "",
        ]
        if summary.failed:
            cells.append(shorten(outcome.error or ""))
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


def report_failures(summary: RunSummary) -> None:
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
