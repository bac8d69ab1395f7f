"""The flows salesflow serves on schedules, each a thin layer over the `salesflow-etl` flow.

`salesflow-daily` loads yesterday's files, `salesflow-poll` whatever is new in the landing folder,
`salesflow-quality-report` publishes a report of recent days. Their parameters are typed in the
signatures, so Prefect refuses a bad `-p day=2024-13-01` before any work starts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from salesflow.backfill import files_by_day
from salesflow.config import Settings, load_settings
from salesflow.errors import RunWideError, UsageError, UserError
from salesflow.flows.etl import run_etl
from salesflow.options import RunOptions
from salesflow.quality import quality_markdown
from salesflow.run_summary import RunSummary
from salesflow.sources.files import batch_identity, file_sha256, source_format, source_path
from salesflow.status import read_quality_window
from salesflow.warehouse import open_warehouse

DAILY_FLOW_NAME = "salesflow-daily"
POLL_FLOW_NAME = "salesflow-poll"
QUALITY_FLOW_NAME = "salesflow-quality-report"
QUALITY_REPORT_KEY = "salesflow-quality-report"

ReportDays = Annotated[int, Field(ge=1, le=366, description="Days the report covers (1-366).")]


def shop_today(settings: Settings) -> date:
    """Today's date in the shop time zone: 'yesterday' means the shop's yesterday, not UTC's."""
    return datetime.now(ZoneInfo(settings.timezone)).date()


@flow(name=DAILY_FLOW_NAME, persist_result=False)
def daily_flow(
    day: date | None = None, landing: Path | None = None, fail_if_missing: bool = True
) -> RunSummary:
    """Load one day's landing files (names carry YYYY-MM-DD) as a salesflow-etl subflow.

    `day` defaults to yesterday in the shop time zone and `landing` to the landing_dir setting.
    A day without files fails the run when `fail_if_missing` (an operator wants to hear that
    yesterday's file never arrived); otherwise it logs a warning and completes with no batches.
    Failed batches fail the run, naming each file, after the other files are loaded.
    """
    settings = load_settings()
    logger = get_run_logger()
    day = day or shop_today(settings) - timedelta(days=1)
    folder = landing or settings.landing_dir
    files = files_by_day(folder).get(day, [])
    logger.info("daily day=%s landing=%s files=%d", day, folder, len(files))
    if not files:
        message = f"{folder}: no landing file for {day} (expected a name carrying {day})"
        if fail_if_missing:
            raise UsageError(message)
        logger.warning("%s; nothing loaded", message)
        return _empty_summary(settings)
    return _raise_on_failed_batches(run_etl(files, settings, RunOptions(landing_root=folder)))


@flow(name=POLL_FLOW_NAME, persist_result=False)
def poll_flow(landing: Path | None = None) -> RunSummary:
    """Load the landing folder's new and changed files; unchanged ones cost a checksum each.

    Files whose content the warehouse's batches table already holds are left out before the
    salesflow-etl subflow starts, so a poll every few minutes with nothing new adds no etl run.
    Files that failed before are tried again.
    """
    settings = load_settings()
    logger = get_run_logger()
    folder = landing or settings.landing_dir
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such landing folder")
    files = sorted(path for path in folder.iterdir() if path.is_file() and source_format(path))
    pending = _not_loaded(files, settings, folder)
    logger.info("poll landing=%s files=%d new_or_changed=%d", folder, len(files), len(pending))
    if not pending:
        return _empty_summary(settings)
    return _raise_on_failed_batches(run_etl(pending, settings, RunOptions(landing_root=folder)))


@flow(name=QUALITY_FLOW_NAME, persist_result=False)
def quality_report_flow(days: ReportDays = 7, until: date | None = None) -> str:
    """Publish a Markdown artifact on the warehouse's last `days` days up to `until` (today).

    It covers the orders dated in those days, the batches that hold them and the batches that
    failed in that time: batches and rows loaded and rejected, rejections by reason and by file,
    and money per day.
    """
    settings = load_settings()
    last = until or shop_today(settings)
    first = last - timedelta(days=days - 1)
    window = read_quality_window(
        open_warehouse(settings.warehouse_location), first, last, settings.timezone
    )
    heading = (
        f"# salesflow quality report: {first} to {last}\n\n"
        f"{days} day(s), shop time zone {settings.timezone}. Orders dated in these days, the "
        "batches holding them, and batches that failed in this time.\n\n"
    )
    body = quality_markdown(window.outcomes, window.samples)
    body = body.replace("# salesflow data quality", "## Batches", 1)
    markdown = heading + window.money_markdown() + body
    create_markdown_artifact(
        key=QUALITY_REPORT_KEY,
        markdown=markdown,
        description=f"Warehouse quality from {first} to {last}.",
    )
    get_run_logger().info(
        "quality report first=%s last=%s batches=%d", first, last, len(window.outcomes)
    )
    return markdown


def _not_loaded(files: list[Path], settings: Settings, landing: Path) -> list[Path]:
    """The files whose current content is not what the warehouse's batches table holds."""
    location = settings.warehouse_location
    if "://" not in location and not Path(location).exists():
        return files
    warehouse = open_warehouse(location)
    warehouse.ensure_schema()
    loaded = warehouse.source_index()
    pending = []
    for path in files:
        batch_id, source = batch_identity(path, landing), str(source_path(path))
        sha256 = file_sha256(path)
        if loaded.loaded_sha256(batch_id, source) == sha256:
            continue  # unchanged
        if loaded.loaded_elsewhere(sha256, batch_id, source) is not None:
            continue  # its content is loaded as another batch: the etl run would skip it
        pending.append(path)
    return pending


def _empty_summary(settings: Settings) -> RunSummary:
    return RunSummary(warehouse=settings.warehouse_location, flow_run_id=None, outcomes=[])


def _raise_on_failed_batches(summary: RunSummary) -> RunSummary:
    """A scheduled run with failed batches ends Failed, so alerts fire; the rest stay loaded."""
    if summary.fault is not None:
        raise RunWideError(f"run stopped: {summary.fault}")
    if summary.failed:
        problems = "; ".join(outcome.error or outcome.batch_id for outcome in summary.failed)
        raise UserError(
            f"{len(summary.failed)} of {len(summary.outcomes)} batch(es) failed: {problems}"
        )
    return summary
