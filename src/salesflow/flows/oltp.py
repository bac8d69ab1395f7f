"""The `salesflow-oltp` flow: incremental loads from the shop's PostgreSQL database.

discover (which days changed since the watermark, minus the lag window) -> extract each changed
day to a CSV file, days side by side, a dropped connection retried -> the `salesflow-etl` flow
loads the files as batches -> the watermark moves on only when every day loaded. Until then the
next run looks from the old watermark again, and days that did load are skipped as unchanged.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from pydantic import BaseModel

from salesflow.config import Settings, load_settings
from salesflow.errors import SalesflowError
from salesflow.flows.concurrency import warehouse_slot
from salesflow.flows.etl import etl_flow
from salesflow.flows.hooks import run_hooks
from salesflow.flows.runners import task_runner_for
from salesflow.flows.tasks import (
    RETRY_OPTIONS,
    STAGE_OPTIONS,
    as_exception,
    prepare_warehouse,
    record_failure,
    retry_options,
)
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.options import RunOptions
from salesflow.pg_url import first_line
from salesflow.run_summary import RunSummary
from salesflow.sources.postgres import PostgresSource
from salesflow.warehouse import open_warehouse
from salesflow.warehouse.base import Warehouse

FLOW_NAME = "salesflow-oltp"


class ExtractPlan(BaseModel):
    """What to extract this run, and the watermark to keep once it is all loaded."""

    days: list[date]
    since: datetime | None  # changes after this were looked for; None = everything
    high_water: datetime | None


@task(name="discover-changes", **STAGE_OPTIONS, **RETRY_OPTIONS)
def discover_changes(
    source_location: str, warehouse: Warehouse, lag: timedelta, full_refresh: bool
) -> ExtractPlan:
    """The days to extract: those holding a changed order, and those an order moved from."""
    source = PostgresSource(source_location)
    watermark = None if full_refresh else warehouse.read_watermark(source.location)
    since = watermark - lag if watermark is not None else None
    changes = source.discover(since)
    days = set(changes.days)
    if since is None:  # also the days loaded before whose orders have all gone since
        loaded = warehouse.fetch(
            "SELECT batch_id FROM batches WHERE starts_with(batch_id, ?)", [source.batch_prefix]
        )
        days.update(source.day_of(str(row[0])) for row in loaded)
    if changes.changed_orders:
        moved_from = warehouse.fetch(
            "SELECT DISTINCT order_date FROM sales "
            "WHERE starts_with(batch_id, ?) AND list_contains(?, order_id)",
            [source.batch_prefix, changes.changed_orders],
        )
        days.update(row[0] for row in moved_from)
    get_run_logger().info(
        "source=%s since=%s days=%d high_water=%s",
        source.location,
        since.isoformat() if since else "-",
        len(days),
        changes.high_water.isoformat() if changes.high_water else "-",
    )
    return ExtractPlan(days=sorted(days), since=since, high_water=changes.high_water)


@task(name="extract-day", **STAGE_OPTIONS, **RETRY_OPTIONS)
def extract_day(source_location: str, day: date, folder: Path) -> Path:
    """One day's order lines as a CSV file in `folder`, the batch the etl flow loads."""
    source = PostgresSource(source_location)
    path = source.extract_day(day, folder / source.batch_name(day))
    get_run_logger().info("batch=%s stage=extract-postgres day=%s", path.name, day)
    return path


@flow(
    name=FLOW_NAME,
    persist_result=False,
    **run_hooks(),
)
def oltp_flow(
    source: str,
    settings: Settings | None = None,
    options: RunOptions = RunOptions(),
    full_refresh: bool = False,
) -> RunSummary:
    """Load the order days of the shop database at `source` (a postgresql:// URL without its
    password) that changed since the last run, as a salesflow-etl run with `options`.

    `full_refresh` extracts every day, ignoring the watermark (unchanged days are still skipped
    by their content); `options.force` reloads even unchanged days.
    """
    settings = settings or load_settings()
    source_of = PostgresSource(source)
    with source_of.one_load_at_a_time():
        return _load_changes(source_of, settings, options, full_refresh)


def _load_changes(
    source_of: PostgresSource, settings: Settings, options: RunOptions, full_refresh: bool
) -> RunSummary:
    """Discover, extract and load, holding the source's lock (see oltp_flow)."""
    warehouse = open_warehouse(options.warehouse_location(settings))
    source_location = source_of.location
    retry = retry_options(settings)
    warehouse = prepare_warehouse.with_options(**retry)(
        warehouse, settings.warehouse_concurrency_limit
    )
    location = warehouse.location
    lag = timedelta(minutes=settings.oltp_lag_minutes)
    plan = discover_changes.with_options(**retry)(source_location, warehouse, lag, full_refresh)
    run_id = str(flow_run.id) if flow_run.id else uuid4().hex
    # A run folder of its own under staging, like the etl flow's, so expiry treats it alike.
    folder = (settings.staging_path / f"{run_id}-postgres").resolve()
    extract = extract_day.with_options(**retry)
    started = datetime.now(UTC)
    futures: list[tuple[date, PrefectFuture[Path]]] = [
        (day, extract.submit(source_location, day, folder)) for day in plan.days
    ]
    files: list[Path] = []
    failures: list[BatchOutcome] = []
    for day, future in futures:
        future.wait()
        if future.state.is_completed():
            files.append(future.result())
            continue
        error = as_exception(future.state.result(raise_on_failure=False), future.state)
        failure = BatchOutcome(
            batch_id=source_of.batch_name(day),
            source=f"{source_location} (orders of {day})",
            sha256=None,
            status=BatchStatus.FAILED,
            error=str(error) if isinstance(error, SalesflowError) else first_line(error),
            started_at=started,
            finished_at=datetime.now(UTC),
            flow_run_id=run_id,
        )
        record = record_failure.with_options(**retry)
        failures.append(record(failure, warehouse, settings.warehouse_concurrency_limit))
    loaded = RunSummary(warehouse=location, flow_run_id=run_id, outcomes=[])
    try:
        if files:
            # The day files' folder is their landing root: batch ids stay their names, run
            # after run.
            day_options = options.model_copy(update={"warehouse": location, "landing_root": folder})
            loaded = etl_flow(sources=files, settings=settings, options=day_options)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = RunSummary(
        warehouse=location,
        flow_run_id=run_id,
        outcomes=[*loaded.outcomes, *failures],
        fault=loaded.fault,
    )
    if summary.failed or summary.fault is not None:  # a day not attempted is not loaded either
        get_run_logger().warning(
            "watermark not advanced: %d day(s) failed; the next load looks from %s again",
            len(summary.failed),
            plan.since.isoformat() if plan.since else "the start",
        )
    elif plan.high_water is not None:
        with warehouse_slot(settings.warehouse_concurrency_limit):
            warehouse.save_watermark(source_location, plan.high_water)
    return summary


def run_oltp(
    source: str, settings: Settings, options: RunOptions = RunOptions(), full_refresh: bool = False
) -> RunSummary:
    """Run the flow on the task runner settings ask for (the entry point the CLI uses)."""
    return oltp_flow.with_options(task_runner=task_runner_for(settings))(
        source=PostgresSource(source).location,
        settings=settings,
        options=options,
        full_refresh=full_refresh,
    )
