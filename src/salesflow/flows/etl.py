"""The `salesflow-etl` flow: every landing file becomes a batch that runs extract -> validate ->
transform -> load, batches side by side, commits one at a time.

The flow keeps a bounded number of batches in flight and submits each next stage as soon as the
previous one finishes, so worker threads never sit waiting on an upstream task.
"""

from __future__ import annotations

import contextlib
import inspect
import pickle
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff
from pydantic import BaseModel

from salesflow import stages
from salesflow.anomalies import AnomalyRules
from salesflow.config import Settings, load_settings
from salesflow.errors import (
    RunWideError,
    StaleStagingError,
    WarehouseBusyError,
    WarehouseUnavailableError,
)
from salesflow.faults import Place, classify
from salesflow.flows.artifacts import PROGRESS_KEY, publish_run_artifacts
from salesflow.flows.caching import result_storage
from salesflow.flows.hooks import run_hooks
from salesflow.flows.runners import task_runner_for
from salesflow.flows.tasks import (
    check_kpis,
    extract_batch,
    load_batch,
    merge_batch,
    plan_batch,
    prepare_warehouse,
    read_fingerprints,
    record_failure,
    split_batch,
    transform_batch,
    validate_batch,
    write_report_task,
)
from salesflow.manifest import BatchManifest, BatchOutcome, BatchStatus, staging_name
from salesflow.profiles import apply_profile, resolve_profile
from salesflow.sources.files import batch_identity, discover_sources
from salesflow.transform import TicketBands
from salesflow.validate import ValidationRules
from salesflow.warehouse import open_warehouse
from salesflow.warehouse.base import LoadPolicy

FLOW_NAME = "salesflow-etl"

BatchListener = Callable[[BatchOutcome], None]
_listeners: list[BatchListener] = []


@contextmanager
def on_batch_finished(listener: BatchListener) -> Iterator[None]:
    """Call `listener` with each batch's outcome as it finishes (the CLI's progress bar)."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class RunSummary(BaseModel):
    """What one run of the flow did, batch by batch, in source order."""

    warehouse: str
    flow_run_id: str | None
    outcomes: list[BatchOutcome]
    fault: str | None = None  # the run-wide fault that stopped the run early, if any

    def count(self, status: BatchStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def failed(self) -> list[BatchOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == BatchStatus.FAILED]

    @property
    def rows_in(self) -> int:
        return sum(o.rows_in or 0 for o in self.outcomes if o.status == BatchStatus.LOADED)

    @property
    def rows_loaded(self) -> int:
        return sum(o.rows_loaded for o in self.outcomes if o.status == BatchStatus.LOADED)

    @property
    def rows_rejected(self) -> int:
        return sum(o.rows_rejected for o in self.outcomes if o.status == BatchStatus.LOADED)

    @property
    def amount_loaded(self) -> Decimal:
        loaded = (o.amount_loaded for o in self.outcomes if o.status == BatchStatus.LOADED)
        return sum(loaded, Decimal(0))


@flow(
    name=FLOW_NAME,
    persist_result=False,
    **run_hooks(),
)
def etl_flow(
    sources: list[Path],
    warehouse: str | None = None,
    force: bool = False,
    accept_rejects: bool = False,
    refresh_cache: bool = False,
    as_of: datetime | None = None,
    settings: Settings | None = None,
    profile: str | None = None,
    report: Path | None = None,
    landing_root: Path | None = None,
) -> RunSummary:
    """Load landing files (or directories of them) into the warehouse, one batch per file.

    A batch is identified by its file's path relative to `landing_root` (default: the
    landing_dir setting), or by its absolute path when it lies elsewhere.

    `as_of` is the time future_date is judged against (default: now), for reproducible reruns.
    `profile` names a source profile: its column map replaces header aliasing and its rule
    overrides apply to every file of the run. With `report`, the run ends by writing the HTML
    report there and linking it as an artifact.

    A batch rejecting more than `max_reject_share` of its rows fails whole unless
    `accept_rejects`.
    """
    settings = settings or load_settings()
    profile_columns: dict[str, str] | None = None
    if profile is not None:
        chosen = resolve_profile(settings, profile)
        settings = apply_profile(settings, chosen)
        profile_columns = chosen.columns
    location = open_warehouse(warehouse or settings.warehouse_location).location
    files = discover_sources(sources)
    root = landing_root if landing_root is not None else settings.landing_dir
    batch_ids = {path: batch_identity(path, root) for path in files}
    run_id = str(flow_run.id) if flow_run.id else None
    staging_root = (settings.staging_path / (run_id or uuid4().hex)).resolve()
    _remove_expired_staging(settings.staging_path, timedelta(hours=settings.cache_hours))
    logger = get_run_logger()
    logger.info(
        "run batches=%d warehouse=%s force=%s profile=%s",
        len(files),
        location,
        force,
        profile or "-",
    )
    # Passing the returned location on makes prepare-warehouse upstream of extract and load.
    limit = settings.warehouse_concurrency_limit
    try:
        location = prepare_warehouse.with_options(**retry_options(settings))(location, limit, root)
    except Exception as error:
        fault = classify(error, Place.WAREHOUSE, location)
        if fault is None:
            raise
        raise fault from error
    try:
        policy = LoadPolicy(
            max_reject_share=settings.max_reject_share,
            accept_rejects=accept_rejects,
            reject_duplicates_in_warehouse=settings.reject_duplicates_in_warehouse,
            timeout_seconds=settings.load_timeout_seconds,
        )
        rules = ValidationRules.from_settings(settings, now=as_of)
        outcomes, fault = _run_batches(
            files,
            batch_ids,
            location,
            force,
            settings,
            staging_root,
            run_id,
            policy,
            rules,
            refresh_cache,
            profile,
            profile_columns,
        )
    finally:
        # Loaded batches took their staged files with them; a failed batch's stay for the cache.
        _remove_if_empty(staging_root / "undo")
        _remove_if_empty(staging_root)
    summary = RunSummary(
        warehouse=location,
        flow_run_id=run_id,
        outcomes=[outcomes[path] for path in files],
        fault=str(fault) if fault is not None else None,
    )
    if fault is not None:
        # The warehouse cannot take more work: no artifacts read from it, no checks, no report.
        logger.error("run stopped: %s", fault)
        return summary
    publish_run_artifacts(summary.outcomes, open_warehouse(location))
    if settings.anomaly_checks:
        _check_kpis(summary, settings)
    if report is not None:
        write_report_task(location, report)
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


def _check_kpis(summary: RunSummary, settings: Settings) -> None:
    """Check the KPIs of the days this run loaded. The load has committed by now: a check that
    fails is logged as an error, never a failed run."""
    loaded = [o.batch_id for o in summary.outcomes if o.status == BatchStatus.LOADED]
    if not loaded:
        return
    logger = get_run_logger()
    try:
        state = check_kpis.with_options(**retry_options(settings))(
            summary.warehouse,
            loaded,
            AnomalyRules.from_settings(settings),
            summary.flow_run_id,
            settings.warehouse_concurrency_limit,
            return_state=True,
        )
        if not state.is_completed():
            logger.error(
                "kpi check failed, the load stands: %s", state.message or state.name or "failed"
            )
    except Exception as error:  # e.g. the API refusing the task run itself
        logger.error("kpi check failed, the load stands: %s", error)


class _Progress:
    """The run's progress artifact: share of batches finished, updated at most every
    `STEP_PERCENT` points (every batch when batches are fewer), so a run of thousands of
    batches costs a few dozen API calls. Progress is a courtesy: a failing update is logged
    and the rest are skipped, the run goes on."""

    STEP_PERCENT = 5.0

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.shown = 0.0
        self.artifact_id: Any = None
        if total:
            self._call(
                create_progress_artifact,
                progress=0.0,
                key=PROGRESS_KEY,
                description=f"Batches finished, of {total}.",
            )

    def advance(self) -> None:
        self.done += 1
        percent = 100.0 * self.done / self.total
        if self.artifact_id is None:
            return
        if percent >= 100.0 or percent - self.shown >= self.STEP_PERCENT:
            self.shown = percent
            self._call(update_progress_artifact, artifact_id=self.artifact_id, progress=percent)

    def _call(self, publish: Callable[..., Any], **arguments: Any) -> None:
        try:
            self.artifact_id = publish(**arguments)
        except Exception as error:
            self.artifact_id = None
            get_run_logger().warning("progress artifact not updated: %s", error)


def _run_batches(
    files: list[Path],
    batch_ids: dict[Path, str],
    location: str,
    force: bool,
    settings: Settings,
    staging_root: Path,
    run_id: str | None,
    policy: LoadPolicy,
    rules: ValidationRules,
    refresh_cache: bool = False,
    profile: str | None = None,
    profile_columns: dict[str, str] | None = None,
) -> tuple[dict[Path, BatchOutcome], RunWideError | None]:
    """Pipeline the batches: stages run side by side, commits happen one at a time in file order.

    Committing in file order makes the warehouse independent of thread timing (which batch
    keeps a row that two files share, say), so two runs over the same input end identical.
    A batch whose cached stage results point at staged files that are gone is redone once,
    with the cache refreshed.

    A run-wide fault (a full disk, an unreachable warehouse, see faults.classify) stops the
    run: the failing batch is recorded if the warehouse can take it, no further batch starts
    or loads, and every batch that did not finish is reported as not attempted. Returns the
    outcomes and that fault.
    """
    retry = retry_options(settings)
    limit = settings.task_timeout_seconds
    cached: dict[str, Any] = {
        "result_storage": result_storage(settings),
        "cache_expiration": timedelta(hours=settings.cache_hours),
        "timeout_seconds": limit,
    }
    plan = plan_batch.with_options(**retry, timeout_seconds=limit)
    loaded = read_fingerprints.with_options(**retry, timeout_seconds=limit)(location)
    stages_of = {
        fresh: (
            extract_batch.with_options(**retry, **cached, refresh_cache=fresh),
            validate_batch.with_options(**cached, refresh_cache=fresh),
            transform_batch.with_options(**cached, refresh_cache=fresh),
        )
        for fresh in (False, True)
    }
    load = load_batch.with_options(**retry)
    split_task = split_batch.with_options(timeout_seconds=limit)
    merge = merge_batch.with_options(timeout_seconds=limit)
    record = record_failure.with_options(**retry)
    bands = TicketBands.from_settings(settings)
    undo_root = staging_root / "undo"
    concurrency_limit = settings.warehouse_concurrency_limit

    # On a Dask cluster only the stages go out to the workers: what reads or writes the
    # warehouse (plan, load, record) stays in this process, on a small local pool.
    home: ThreadPoolTaskRunner[Any] | None = None
    if settings.task_runner == "dask":
        home = ThreadPoolTaskRunner(max_workers=2)
    home_runner: contextlib.AbstractContextManager[Any] = home or contextlib.nullcontext()

    def submit_home(task: Task[..., Any], *args: Any) -> PrefectFuture[Any]:
        if home is None:
            return task.submit(*args)
        return home.submit(task, parameters=dict(inspect.signature(task.fn).bind(*args).arguments))

    waiting = deque(enumerate(files))
    in_flight: dict[PrefectFuture[Any], _Step] = {}
    ready: dict[int, tuple[_Step, BatchManifest]] = {}  # transformed, waiting for their turn
    finished: set[int] = set()
    attempt: dict[int, int] = {}  # the batch's current attempt; older tasks' results are stale
    split: dict[int, tuple[BatchManifest, list[BatchManifest | None]]] = {}  # parts so far
    next_commit = 0
    outcomes: dict[Path, BatchOutcome] = {}
    max_staged = settings.max_workers * 2
    progress = _Progress(len(files))
    fault: RunWideError | None = None

    def start_batches() -> None:
        while fault is None and waiting and len(in_flight) + len(ready) < max_staged:
            position, source = waiting.popleft()
            attempt[position] = 0
            step = _Step("plan", position, source, datetime.now(UTC), fresh=refresh_cache)
            batch_id = batch_ids[source]
            in_flight[
                submit_home(plan, source, batch_id, loaded, force, profile, profile_columns)
            ] = step

    def commit_next() -> None:
        nonlocal next_commit
        while next_commit in finished:
            next_commit += 1
        if fault is None and next_commit in ready:
            step, manifest = ready.pop(next_commit)
            in_flight[
                submit_home(load, manifest, location, run_id, policy, undo_root, concurrency_limit)
            ] = step.next("load")

    def finish(step: _Step, outcome: BatchOutcome) -> None:
        outcomes[step.source] = outcome
        finished.add(step.position)
        progress.advance()
        if outcome.status not in (BatchStatus.FAILED, BatchStatus.NOT_ATTEMPTED):
            # Only this run's own staged files; a batch not loaded keeps them for the cache.
            stages.discard_staging(staging_root / staging_name(batch_ids[step.source]))
        for listener in list(_listeners):
            listener(outcome)

    def submit_validate(step: _Step, manifest: BatchManifest) -> None:
        validate = stages_of[step.fresh][1]
        in_flight[validate.submit(manifest, rules)] = step.next("validate")

    with home_runner:
        start_batches()
        while in_flight:
            future = next(as_completed(list(in_flight)))
            step = in_flight.pop(future)
            future.wait()  # sets the final state; before that `.state` may read a stale one
            state = future.state
            extract, _, transform = stages_of[step.fresh]
            if step.attempt != attempt[step.position]:
                pass  # a part of a batch that failed or was redone meanwhile: nothing to do
            elif fault is not None and step.stage != "record":
                attempt[step.position] += 1  # the run stopped: this batch goes no further
                finish(step, _not_attempted(step, batch_ids[step.source], fault, run_id))
            elif not state.is_completed():
                error = as_exception(state.result(raise_on_failure=False), state)
                attempt[step.position] += 1  # the batch's other parts in flight no longer count
                split.pop(step.position, None)
                run_wide = _run_wide(error, location, batch_ids[step.source])
                if run_wide is not None and fault is None:
                    fault = run_wide
                    error = run_wide
                if isinstance(error, _REDO_FRESH) and not step.fresh and step.planned:
                    redo = step._replace(
                        stage="extract", fresh=True, part=None, attempt=attempt[step.position]
                    )
                    in_flight[stages_of[True][0].submit(step.planned, staging_root)] = redo
                elif step.failure is not None:  # the warehouse could not even record the failure
                    note = f"{step.failure.error} (not recorded in batches: {error})"
                    finish(step, step.failure.model_copy(update={"error": note}))
                else:
                    failure = stages.failed_outcome(
                        step.source, error, step.started_at, run_id, batch_ids[step.source]
                    )
                    following = step._replace(
                        stage="record", failure=failure, part=None, attempt=attempt[step.position]
                    )
                    in_flight[submit_home(record, failure, location, concurrency_limit)] = following
            elif step.stage == "plan":
                planned = future.result()
                if planned.skipped:
                    ready[step.position] = (step, planned)  # its turn records the skip
                else:
                    following = step._replace(stage="extract", planned=planned)
                    in_flight[extract.submit(planned, staging_root)] = following
            elif step.stage == "extract":
                staged = future.result()
                if 0 < settings.split_rows < staged.rows_in:
                    in_flight[split_task.submit(staged)] = step._replace(
                        stage="split", staged=staged
                    )
                else:
                    submit_validate(step, staged)
            elif step.stage == "split":
                parts = future.result()
                assert step.staged is not None
                split[step.position] = (step.staged, [None] * len(parts))
                for number, part in enumerate(parts):
                    submit_validate(step._replace(part=number), part)
            elif step.stage == "validate":
                in_flight[transform.submit(future.result(), bands)] = step.next("transform")
            elif step.stage == "transform" and step.part is None:
                ready[step.position] = (step, future.result())
            elif step.stage == "transform":
                assert step.part is not None
                whole, parts_done = split[step.position]
                parts_done[step.part] = future.result()
                if all(part is not None for part in parts_done):
                    del split[step.position]
                    merged = merge.submit(whole, [part for part in parts_done if part is not None])
                    in_flight[merged] = step._replace(stage="merge", part=None)
            elif step.stage == "merge":
                ready[step.position] = (step, future.result())
            else:
                finish(step, future.result())
            commit_next()
            start_batches()
    if fault is not None:
        for position, source in [*waiting, *((p, ready[p][0].source) for p in sorted(ready))]:
            step = _Step("plan", position, source, datetime.now(UTC))
            finish(step, _not_attempted(step, batch_ids[source], fault, run_id))
    return outcomes, fault


# Failures a fresh redo of the batch cures: staged files that are gone, or a cached stage result
# another process was still writing when this one read it (overlapping runs share the result
# store; Prefect reads an empty file as "EOFError: Ran out of input").
_REDO_FRESH = (StaleStagingError, EOFError, pickle.UnpicklingError)


def _run_wide(error: BaseException, location: str, batch_id: str) -> RunWideError | None:
    """The run-wide fault a failed task stands for: one its task already named (a full
    disk, a denied permission), or a warehouse that stayed unreachable, or held by another
    program, through all the retries. Anything else is the batch's own failure."""
    if isinstance(error, RunWideError):
        return error
    if isinstance(error, WarehouseUnavailableError | WarehouseBusyError):
        return classify(error, Place.WAREHOUSE, location, batch_id)
    return None


def _not_attempted(
    step: _Step, batch_id: str, fault: RunWideError, run_id: str | None
) -> BatchOutcome:
    """A batch the run did not load because a run-wide fault stopped it first; nothing of it
    was written, so the next run takes it up as if new (its cached stages are reused)."""
    return BatchOutcome(
        batch_id=batch_id,
        source=str(step.source),
        sha256=None,
        status=BatchStatus.NOT_ATTEMPTED,
        error=f"{step.source}: not attempted, the run stopped: {fault}",
        started_at=step.started_at,
        finished_at=datetime.now(UTC),
        flow_run_id=run_id,
    )


class _Step(NamedTuple):
    """The task a batch is waiting on."""

    stage: str
    position: int  # of the source in the run: the order of commits
    source: Path
    started_at: datetime
    failure: BatchOutcome | None = None  # set while recording a failure
    planned: BatchManifest | None = None  # the plan, to redo the batch if staging is stale
    fresh: bool = False  # stage results recomputed rather than taken from the cache
    part: int | None = None  # which part of a batch split by region
    attempt: int = 0  # the batch's attempt this task belongs to
    staged: BatchManifest | None = None  # the whole batch as extracted, while it is split

    def next(self, stage: str, failure: BatchOutcome | None = None) -> _Step:
        return self._replace(stage=stage, failure=failure)


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


def retry_options(settings: Settings) -> dict[str, Any]:
    """Retries with exponential backoff (jitter is set on the tasks) from settings."""
    return {
        "retries": settings.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_delay_seconds),
    }


def as_exception(error: Any, state: Any) -> BaseException:
    if isinstance(error, BaseException):
        return error
    return RuntimeError(state.message or f"task ended in state {state.name}")


def run_etl(
    sources: list[Path],
    settings: Settings,
    warehouse: str | None = None,
    force: bool = False,
    accept_rejects: bool = False,
    refresh_cache: bool = False,
    as_of: datetime | None = None,
    profile: str | None = None,
    report: Path | None = None,
    landing_root: Path | None = None,
) -> RunSummary:
    """Run the flow on the task runner settings ask for (the entry point the CLI uses)."""
    return etl_flow.with_options(task_runner=task_runner_for(settings))(
        sources=sources,
        warehouse=warehouse,
        force=force,
        accept_rejects=accept_rejects,
        refresh_cache=refresh_cache,
        as_of=as_of,
        settings=settings,
        profile=profile,
        report=report,
        landing_root=landing_root,
    )
