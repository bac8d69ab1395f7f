"""`salesflow oltp init|seed|load`: the shop's PostgreSQL database as a source."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from salesflow.cli.console import (
    WarehouseOption,
    console,
    iso_date,
    print_run,
    report_failures,
    user_errors,
)
from salesflow.config import Settings, load_settings
from salesflow.errors import UsageError
from salesflow.options import RunOptions

oltp_app = typer.Typer(
    help="The shop's PostgreSQL database as a source: create it, fill it, load it incrementally.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
    settings = load_settings(oltp_url=dsn, **overrides)
    if settings.oltp_url is None:
        raise UsageError("no shop database: pass --dsn postgresql://... or set oltp_url")
    return settings, settings.oltp_url


@oltp_app.command("init")
def oltp_init(dsn: DsnOption = None) -> None:
    """Create the shop schema: customers, products, orders, order_items, each with
    [bold]updated_at[/] kept by triggers, and their indexes. Safe to run again."""
    from salesflow.pg_url import PostgresUrl
    from salesflow.sources.shop import DEFAULT_SCHEMA, init_shop

    with user_errors():
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
        date,
        typer.Option(
            help="First generated day, YYYY-MM-DD.", metavar="DATE", parser=iso_date("--start")
        ),
    ] = date(2024, 1, 1),
    days: Annotated[int, typer.Option(help="Days of generated sales.", min=1)] = 31,
    rows_per_day: Annotated[int, typer.Option(help="Order lines per day.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 42,
) -> None:
    """Fill the shop tables from the generator (clean sales) or from a file; rows already
    there (same keys) are left as they are."""
    from salesflow.pg_url import PostgresUrl
    from salesflow.sources.shop import DEFAULT_SCHEMA, generated_sales, sales_from_file, seed_shop

    with user_errors():
        _, location = _shop_url(dsn)
        url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        if from_file is not None:
            sales = sales_from_file(from_file)
        else:
            sales = generated_sales(start, days, rows_per_day, seed)
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

    with user_errors():
        settings, location = _shop_url(dsn, warehouse=warehouse)
        with console.status("loading changed days from the shop database"):
            summary = run_oltp(
                location,
                settings,
                RunOptions(force=force, accept_rejects=accept_rejects),
                full_refresh=full_refresh,
            )
        print_run(summary)
        report_failures(summary)
