"""Prefect tasks, one per stage of a batch: retries where the I/O is, never for bad data.

Tasks exchange small manifests; the data itself stays in staged Parquet files, so nothing large
passes through Prefect's result store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task

from salesflow import stages
from salesflow.errors import SalesflowError, TransientError
from salesflow.flows.caching import stage_key, transform_key, validate_key
from salesflow.manifest import BatchManifest, BatchOutcome
from salesflow.transform import TicketBands
from salesflow.validate import ValidationRules
from salesflow.warehouse import open_warehouse
from salesflow.warehouse.base import LoadPolicy


def is_transient_failure(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass on its own: I/O and connection trouble, a busy warehouse."""
    try:
        state.result()
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


# Results are small manifests, but they are still not persisted: a re-run decides what to do from
# the warehouse's `batches` table, not from Prefect's result store.
STAGE_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": 1.0,
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient_failure,
}


@task(name="prepare-warehouse", tags=["load"], **STAGE_OPTIONS, **RETRY_OPTIONS)
def prepare_warehouse(warehouse_location: str) -> str:
    """Open the warehouse up front (creating its tables) so a bad location fails the run early."""
    open_warehouse(warehouse_location).ensure_schema()
    return warehouse_location


@task(name="plan", tags=["extract"], **STAGE_OPTIONS, **RETRY_OPTIONS)
def plan_batch(source: Path, warehouse_location: str, force: bool) -> BatchManifest:
    """Fingerprint one landing file; skip it when the warehouse holds it unchanged."""
    manifest = stages.plan(source, open_warehouse(warehouse_location), force)
    if manifest.skipped:
        get_run_logger().info(
            "batch=%s stage=plan status=skipped sha256=%s",
            manifest.batch_id,
            manifest.sha256[:12],
        )
    return manifest


# Stage results are small manifests, persisted to result storage and cached by content
# (see flows/caching.py); the flow sets storage and expiration from settings.
CACHED_OPTIONS: dict[str, Any] = {"persist_result": True}


@task(name="extract", tags=["extract"], cache_key_fn=stage_key, **CACHED_OPTIONS, **RETRY_OPTIONS)
def extract_batch(manifest: BatchManifest, staging_root: Path) -> BatchManifest:
    """Stage one landing file as text-typed Parquet."""
    staged = stages.stage(manifest, staging_root)
    get_run_logger().info(
        "batch=%s stage=extract rows_in=%d columns=%d",
        staged.batch_id,
        staged.rows_in,
        len(staged.column_map),
    )
    return staged


@task(name="validate", tags=["validate"], retries=0, cache_key_fn=validate_key, **CACHED_OPTIONS)
def validate_batch(manifest: BatchManifest, rules: ValidationRules) -> BatchManifest:
    """Validate one staged batch; validation problems are data, never retried."""
    checked = stages.validate(manifest, rules)
    if not checked.skipped:
        logger = get_run_logger()
        logger.info(
            "batch=%s stage=validate rows_valid=%d rows_rejected=%d",
            checked.batch_id,
            checked.rows_valid,
            checked.rows_rejected,
        )
        if checked.rows_rejected:
            reasons = " ".join(f"{code}={count}" for code, count in checked.reason_counts.items())
            logger.warning(
                "batch=%s rejected=%d %s", checked.batch_id, checked.rows_rejected, reasons
            )
        if checked.odd_counts.get("zero_price"):
            logger.warning(
                "batch=%s odd_but_valid zero_price=%d",
                checked.batch_id,
                checked.odd_counts["zero_price"],
            )
    return checked


@task(name="transform", tags=["transform"], retries=0, cache_key_fn=transform_key, **CACHED_OPTIONS)
def transform_batch(manifest: BatchManifest, bands: TicketBands) -> BatchManifest:
    """Enrich the valid rows of one batch into `sales` rows."""
    enriched = stages.transform(manifest, bands)
    if not enriched.skipped:
        get_run_logger().info(
            "batch=%s stage=transform rows=%d amount=%s",
            enriched.batch_id,
            enriched.rows_valid,
            enriched.amount,
        )
    return enriched


@task(name="load", tags=["load"], **STAGE_OPTIONS, **RETRY_OPTIONS)
def load_batch(
    manifest: BatchManifest, warehouse_location: str, flow_run_id: str | None, policy: LoadPolicy
) -> BatchOutcome:
    """Commit one batch in a single warehouse transaction (or record that it was skipped)."""
    outcome = stages.load(manifest, open_warehouse(warehouse_location), flow_run_id, policy)
    reasons = ",".join(f"{code}:{count}" for code, count in outcome.reason_counts.items())
    get_run_logger().info(
        "batch=%s stage=load status=%s rows_in=%s rows_loaded=%d rows_rejected=%d amount=%s "
        "reasons=%s",
        outcome.batch_id,
        outcome.status,
        outcome.rows_in,
        outcome.rows_loaded,
        outcome.rows_rejected,
        outcome.amount_loaded,
        reasons or "-",
    )
    return outcome


@task(name="record-failure", tags=["load"], **STAGE_OPTIONS, **RETRY_OPTIONS)
def record_failure(outcome: BatchOutcome, warehouse_location: str) -> BatchOutcome:
    """Write a failed batch to `batches`; its previously loaded rows are left as they were."""
    open_warehouse(warehouse_location).record_outcome(outcome)
    get_run_logger().error("batch=%s status=failed error=%r", outcome.batch_id, outcome.error)
    return outcome
