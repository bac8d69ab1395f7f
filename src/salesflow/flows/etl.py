"""The `salesflow-etl` flow: every landing file becomes a batch that runs extract -> validate (and
transform, in one pass) -> load, batches side by side, commits one at a time.

The flow resolves what the run needs once (settings under the profile, the warehouse, the files
and their batch ids), hands the batches to the scheduler (flows/scheduler.py), then publishes
the run's artifacts, checks its KPIs and writes the report.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from salesflow.anomalies import AnomalyRules
from salesflow.config import Settings, load_settings
from salesflow.faults import Place, classify
from salesflow.flows.artifacts import publish_run_artifacts
from salesflow.flows.hooks import run_hooks
from salesflow.flows.runners import task_runner_for
from salesflow.flows.scheduler import BatchRun, run_batches
from salesflow.flows.tasks import check_kpis, prepare_warehouse, retry_options, write_report_task
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions, apply_run_profile
from salesflow.run_summary import RunSummary
from salesflow.sources.files import batch_identity, discover_sources
from salesflow.warehouse import open_warehouse
from salesflow.warehouse.base import Warehouse

FLOW_NAME = "salesflow-etl"


@flow(
    name=FLOW_NAME,
    persist_result=False,
    **run_hooks(),
)
def etl_flow(
    sources: list[Path], settings: Settings | None = None, options: RunOptions = RunOptions()
) -> RunSummary:
    """Load landing files (or directories of them) into the warehouse, one batch per file.

    A batch is identified by its file's path relative to `options.landing_root` (default: the
    landing_dir setting), or by its absolute path when it lies elsewhere.

    `options.as_of` is the time future_date is judged against (default: now), for reproducible
    reruns. `options.profile` names a source profile: its column map replaces header aliasing
    and its rule overrides apply to every file of the run. With `options.report`, the run ends
    by writing the HTML report there and linking it as an artifact.

    A batch rejecting more than `max_reject_share` of its rows fails whole unless
    `options.accept_rejects`.
    """
    settings, profile = apply_run_profile(settings or load_settings(), options.profile)
    warehouse = open_warehouse(options.warehouse_location(settings))
    files = discover_sources(sources)
    root = options.landing_root_of(settings)
    run_id = str(flow_run.id) if flow_run.id else None
    staging_root = (settings.staging_path / (run_id or uuid4().hex)).resolve()
    _remove_expired_staging(settings.staging_path, timedelta(hours=settings.cache_hours))
    logger = get_run_logger()
    logger.info(
        "run batches=%d warehouse=%s force=%s profile=%s",
        len(files),
        warehouse.location,
        options.force,
        options.profile or "-",
    )
    # Passing the returned warehouse on makes prepare-warehouse upstream of extract and load.
    limit = settings.warehouse_concurrency_limit
    try:
        warehouse = prepare_warehouse.with_options(**retry_options(settings))(
            warehouse, limit, root
        )
    except Exception as error:
        fault = classify(error, Place.WAREHOUSE, warehouse.location)
        if fault is None:
            raise
        raise fault from error
    batch_ids = {path: batch_identity(path, root) for path in files}
    run = BatchRun(settings, options, profile, warehouse, run_id, staging_root, batch_ids)
    try:
        outcomes, fault = run_batches(files, run)
    finally:
        # Loaded batches took their staged files with them; a failed batch's stay for the cache.
        _remove_if_empty(staging_root / "undo")
        _remove_if_empty(staging_root)
    summary = RunSummary(
        warehouse=warehouse.location,
        flow_run_id=run_id,
        outcomes=[outcomes[path] for path in files],
        fault=str(fault) if fault is not None else None,
    )
    if fault is not None:
        # The warehouse cannot take more work: no artifacts read from it, no checks, no report.
        logger.error("run stopped: %s", fault)
        return summary
    publish_run_artifacts(summary.outcomes, warehouse)
    if settings.anomaly_checks:
        _check_kpis(summary, warehouse, settings)
    if options.report is not None:
        write_report_task(warehouse, options.report)
    logger.info(
        "run finished batches=%d loaded=%d skipped=%d failed=%d rows_in=%d rows_loaded=%d "
        "rows_rejected=%d amount=%s",
        len(files),
        summary.count(BatchStatus.LOADED),
        summary.count(BatchStatus.SKIPPED),
        summary.count(BatchStatus.FAILED),
        summary.rows_in,
        summary.rows_loaded,
        summary.rows_rejected,
        summary.amount_loaded,
    )
    return summary


def _check_kpis(summary: RunSummary, warehouse: Warehouse, settings: Settings) -> None:
    """Check the KPIs of the days this run loaded. The load has committed by now: a check that
    fails is logged as an error, never a failed run."""
    if not summary.loaded:
        return
    logger = get_run_logger()
    try:
        state = check_kpis.with_options(**retry_options(settings))(
            warehouse,
            summary,
            AnomalyRules.from_settings(settings),
            settings.warehouse_concurrency_limit,
            return_state=True,
        )
        if not state.is_completed():
            logger.error(
                "kpi check failed, the load stands: %s", state.message or state.name or "failed"
            )
    except Exception as error:  # e.g. the API refusing the task run itself
        logger.error("kpi check failed, the load stands: %s", error)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _remove_expired_staging(staging: Path, keep_for: timedelta) -> None:
    """Staged files of runs older than the cache can no longer be reused: remove them."""
    if not staging.is_dir():
        return
    cutoff = time.time() - keep_for.total_seconds()
    for run_folder in staging.iterdir():
        if run_folder.is_dir() and run_folder.stat().st_mtime < cutoff:
            shutil.rmtree(run_folder, ignore_errors=True)


def run_etl(
    sources: list[Path], settings: Settings, options: RunOptions = RunOptions()
) -> RunSummary:
    """Run the flow on the task runner settings ask for (the entry point the CLI uses)."""
    return etl_flow.with_options(task_runner=task_runner_for(settings))(
        sources=sources, settings=settings, options=options
    )
