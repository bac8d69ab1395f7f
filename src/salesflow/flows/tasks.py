"""Prefect tasks of a batch (plan, extract-validate, load): retries where the I/O is, never for
bad data.

Tasks exchange small manifests; the data itself stays in staged Parquet files, so nothing large
passes through Prefect's result store.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff
from prefect.transactions import CommitMode, Transaction, transaction

from salesflow import batch_parts, stages
from salesflow.anomalies import Anomaly, AnomalyRules, check_days, describe, loaded_dates
from salesflow.config import Settings
from salesflow.errors import SalesflowError, StaleStagingError, TransientError
from salesflow.faults import Place, named_faults
from salesflow.flows.artifacts import publish_anomalies
from salesflow.flows.caching import prepare_key, validate_key
from salesflow.flows.concurrency import ensure_limit, warehouse_slot
from salesflow.manifest import BatchManifest, BatchOutcome, BatchStatus, staging_name
from salesflow.options import ReadAs, Recheck
from salesflow.rules import ValidationRules
from salesflow.run_summary import RunSummary
from salesflow.transform import TicketBands
from salesflow.warehouse.base import LoadPolicy, SourceIndex, Warehouse


def is_transient_failure(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass on its own: I/O and connection trouble, a busy warehouse."""
    try:
        state.result()
    except StaleStagingError:
        return False  # retrying cannot bring the files back: the flow redoes the batch at once
    except TransientError:
        return True
    except SalesflowError:
        return False
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ):
        return False
    except (OSError, ConnectionError, TimeoutError):
        return True
    except Exception:
        return False
    return False


# No task carries tags: Prefect acquires a `tag:<name>` concurrency slot through the API for each
# tag of each task run, even with no limit set. Measured here on the ephemeral API, 30 small
# batches took 54 s with tags and 19 s without (about 1.2 s per batch).

# Results are small manifests, but they are still not persisted: a re-run decides what to do from
# the warehouse's `batches` table, not from Prefect's result store.
STAGE_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": 1.0,
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient_failure,
}


def retry_options(settings: Settings) -> dict[str, Any]:
    """Retries with exponential backoff (jitter is set on the tasks) from settings."""
    return {
        "retries": settings.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_delay_seconds),
    }


def as_exception(error: Any, state: State[Any]) -> BaseException:
    """What a failed task run raised, or an error made of its state's message."""
    if isinstance(error, BaseException):
        return error
    return RuntimeError(state.message or f"task ended in state {state.name}")


def log_stage(manifest: BatchManifest | BatchOutcome, stage: str, **counts: object) -> None:
    """One `batch=<id> stage=<stage> name=value ...` line, the shape every stage logs."""
    fields = "".join(f" {name}=%s" for name in counts)
    get_run_logger().info(f"batch=%s stage={stage}{fields}", manifest.batch_id, *counts.values())


@task(name="prepare-warehouse", **STAGE_OPTIONS, **RETRY_OPTIONS)
def prepare_warehouse(
    warehouse: Warehouse, concurrency_limit: str | None = None, landing_root: Path | None = None
) -> Warehouse:
    """Create the warehouse's tables (upgrading an older one) up front, so a bad location fails
    the run early, and make sure the global concurrency limit its loads hold exists."""
    ensure_limit(concurrency_limit)
    with named_faults(Place.WAREHOUSE, warehouse.location), warehouse_slot(concurrency_limit):
        warehouse.ensure_schema()
        warehouse.upgrade(landing_root)
    return warehouse


@task(name="read-fingerprints", **STAGE_OPTIONS, **RETRY_OPTIONS)
def read_fingerprints(warehouse: Warehouse) -> SourceIndex:
    """What the warehouse holds (batch ids, sources, loaded sha256), read once for all of a
    run's plans.

    One read instead of one per batch: a plan that asked the warehouse itself would wait for
    whichever load holds the file, and keep a worker idle meanwhile. A batch another run loads
    after this read is still caught: the load finds it committed and records a skip.
    """
    with named_faults(Place.WAREHOUSE, warehouse.location):
        return warehouse.source_index()


@task(name="plan", **STAGE_OPTIONS, **RETRY_OPTIONS)
def plan_batch(
    source: Path,
    batch_id: str,
    loaded: SourceIndex | None,
    profile: ReadAs | None,
    recheck: Recheck,
) -> BatchManifest:
    """Fingerprint one landing file; skip it when the warehouse holds it unchanged, or holds
    its content as another batch (`loaded`, from read-fingerprints). An unchanged size and
    mtime skip it without hashing, unless `recheck` says otherwise (see stages.plan)."""
    manifest = stages.plan(source, batch_id, loaded, profile, recheck)
    if manifest.duplicate_of is not None:
        get_run_logger().warning(
            "batch=%s stage=plan status=skipped same_content_as=%s sha256=%s",
            manifest.batch_id,
            manifest.duplicate_of,
            manifest.sha256[:12],
        )
    elif manifest.skipped:
        log_stage(manifest, "plan", status="skipped", sha256=manifest.sha256[:12])
    return manifest


# Stage results are small manifests, persisted to result storage and cached by content
# (see flows/caching.py); the flow sets storage and expiration from settings.
CACHED_OPTIONS: dict[str, Any] = {"persist_result": True}


@task(name="extract-validate", cache_key_fn=prepare_key, **CACHED_OPTIONS, **RETRY_OPTIONS)
def prepare_batch(
    manifest: BatchManifest,
    staging_root: Path,
    rules: ValidationRules,
    bands: TicketBands,
    split_rows: int = 0,
) -> BatchManifest:
    """Stage one landing file and validate it (transforming its valid rows into `sales` rows):
    the batch's one task before its load. Retried whole on transient errors only (I/O reading
    the file or writing its staged Parquet); validation problems are data, never retried. A
    batch over `split_rows` comes back staged only, to be validated in parts (stages.prepare)."""
    with named_faults(Place.STAGING, str(staging_root), manifest.batch_id):
        prepared, seconds = stages.prepare(manifest, staging_root, rules, bands, split_rows)
    if prepared.skipped:
        return prepared
    log_stage(
        prepared,
        "extract",
        rows_in=prepared.rows_in,
        columns=len(prepared.column_map),
        seconds=f"{seconds.extract:.3f}",
    )
    if not stages.needs_split(prepared, split_rows):
        log_validated(prepared, seconds.validate)
    return prepared


def log_validated(checked: BatchManifest, seconds: float) -> None:
    """The validate line of a batch (or part), and warnings for its rejected and odd rows."""
    log_stage(
        checked,
        "validate",
        rows_valid=checked.rows_valid,
        rows_rejected=checked.rows_rejected,
        amount=checked.amount,
        seconds=f"{seconds:.3f}",
    )
    logger = get_run_logger()
    if checked.rows_rejected:
        reasons = " ".join(f"{code}={count}" for code, count in checked.reason_counts.items())
        logger.warning("batch=%s rejected=%d %s", checked.batch_id, checked.rows_rejected, reasons)
    if checked.odd_counts.get("zero_price"):
        zero_price = checked.odd_counts["zero_price"]
        logger.warning("batch=%s odd_but_valid zero_price=%d", checked.batch_id, zero_price)


@task(name="validate", retries=0, cache_key_fn=validate_key, **CACHED_OPTIONS)
def validate_batch(
    manifest: BatchManifest, rules: ValidationRules, bands: TicketBands
) -> BatchManifest:
    """Validate one part of a batch split by region (a whole batch is validated by
    extract-validate); validation problems are data, never retried."""
    started = time.perf_counter()
    with _staging_faults(manifest):
        checked = stages.validate(manifest, rules, bands)
    if not checked.skipped:
        log_validated(checked, time.perf_counter() - started)
    return checked


@task(name="split", retries=0, **STAGE_OPTIONS)
def split_batch(manifest: BatchManifest) -> list[BatchManifest]:
    """Cut a large staged batch into one part per region (see batch_parts.split_by_region)."""
    parts = batch_parts.split_by_region(manifest)
    log_stage(manifest, "split", rows_in=manifest.rows_in, parts=len(parts))
    return parts


@task(name="merge", retries=0, **STAGE_OPTIONS)
def merge_batch(manifest: BatchManifest, parts: list[BatchManifest]) -> BatchManifest:
    """Put the validated parts of a split batch back together for its one load."""
    merged = batch_parts.merge_parts(manifest, parts)
    log_stage(
        merged,
        "merge",
        parts=len(parts),
        rows_valid=merged.rows_valid,
        rows_rejected=merged.rows_rejected,
        amount=merged.amount,
    )
    return merged


@task(name="load", **STAGE_OPTIONS, **RETRY_OPTIONS)
def load_batch(
    manifest: BatchManifest,
    warehouse: Warehouse,
    flow_run_id: str | None,
    policy: LoadPolicy,
    undo_root: Path | None = None,
    concurrency_limit: str | None = None,
) -> BatchOutcome:
    """Commit one batch (or record that it was skipped), holding a warehouse slot.

    The commit is one database transaction inside a Prefect transaction: the batch's previous
    version is saved under `undo_root` as part of the commit, the result is read back through a
    new connection, and if that or anything else fails before the Prefect transaction ends, its
    rollback hook puts the previous version back. A load is done only when both committed.
    """
    undo_dir = None
    if undo_root is not None and not manifest.skipped:
        undo_dir = undo_root / staging_name(manifest.batch_id)
    with (
        named_faults(Place.WAREHOUSE, warehouse.location, manifest.batch_id),
        warehouse_slot(concurrency_limit),
        transaction(commit_mode=CommitMode.EAGER) as txn,
    ):
        outcome = stages.load(manifest, warehouse, flow_run_id, replace(policy, undo_dir=undo_dir))
        if undo_dir is not None and outcome.status == BatchStatus.LOADED:
            txn.stage(
                outcome,
                on_rollback_hooks=[
                    partial(_restore_previous_version, warehouse, outcome, undo_dir)
                ],
                on_commit_hooks=[partial(_forget_previous_version, undo_dir)],
            )
        stages.check_committed(outcome, warehouse)
    reasons = ",".join(f"{code}:{count}" for code, count in outcome.reason_counts.items())
    log_stage(
        outcome,
        "load",
        status=outcome.status,
        rows_in=outcome.rows_in,
        rows_loaded=outcome.rows_loaded,
        rows_rejected=outcome.rows_rejected,
        amount=outcome.amount_loaded,
        reasons=reasons or "-",
    )
    return outcome


def _staging_faults(manifest: BatchManifest) -> contextlib.AbstractContextManager[None]:
    """A stage writing its Parquet beside the batch's staged files: name a full disk there."""
    folder = str(manifest.staging_dir) if manifest.staging_dir is not None else "staging"
    return named_faults(Place.STAGING, folder, manifest.batch_id)


def _restore_previous_version(
    warehouse: Warehouse, outcome: BatchOutcome, undo_dir: Path, txn: Transaction
) -> None:
    """Rollback hook: the load committed, then something failed; put the batch back."""
    restored = warehouse.restore_previous_version(outcome, undo_dir)
    get_run_logger().warning(
        "batch=%s stage=load status=rolled_back restored_previous=%s",
        outcome.batch_id,
        restored,
    )
    shutil.rmtree(undo_dir, ignore_errors=True)


def _forget_previous_version(undo_dir: Path, txn: Transaction) -> None:
    """Commit hook: the load stands, its undo copy is no longer needed."""
    shutil.rmtree(undo_dir, ignore_errors=True)


@task(name="record-failure", **STAGE_OPTIONS, **RETRY_OPTIONS)
def record_failure(
    outcome: BatchOutcome, warehouse: Warehouse, concurrency_limit: str | None = None
) -> BatchOutcome:
    """Write a failed batch to `batches`; its previously loaded rows are left as they were."""
    with named_faults(Place.WAREHOUSE, warehouse.location), warehouse_slot(concurrency_limit):
        warehouse.record_outcome(outcome)
    get_run_logger().error("batch=%s status=failed error=%r", outcome.batch_id, outcome.error)
    return outcome


@task(name="check-kpis", **STAGE_OPTIONS, **RETRY_OPTIONS)
def check_kpis(
    warehouse: Warehouse, run: RunSummary, rules: AnomalyRules, concurrency_limit: str | None
) -> list[Anomaly]:
    """Check the KPIs of the order dates the run's batches loaded against their trailing window:
    store the anomalies (replacing the days' earlier ones), log each as a warning, publish the
    artifact and one event each. Events go last, so a retried check rarely repeats them."""
    dates = loaded_dates(warehouse, [outcome.batch_id for outcome in run.loaded])
    with warehouse_slot(concurrency_limit):
        found = check_days(warehouse, dates, rules, run.flow_run_id)
    logger = get_run_logger()
    logger.info("kpis checked days=%d anomalies=%d", len(dates), len(found))
    for anomaly in found:
        logger.warning(describe(anomaly))
    publish_anomalies(found, dates, warehouse.location)
    return found


@task(name="write-report", **STAGE_OPTIONS)
def write_report_task(warehouse: Warehouse, out: Path) -> Path:
    """Write the HTML report of the whole warehouse and link it from the run's artifacts."""
    from salesflow.flows.artifacts import publish_report_link
    from salesflow.report import write_report

    written = write_report(warehouse, out)
    publish_report_link(written)
    get_run_logger().info("report=%s", written)
    return written
