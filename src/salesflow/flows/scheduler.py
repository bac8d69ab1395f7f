"""The batch scheduler of the `salesflow-etl` flow: batches side by side, commits one at a time.

Each batch moves through the stages of `Stage` (plan, extract-validate, load: three task runs;
a batch split by region adds split, a validate per part and merge); when a batch's task
finishes, the transition of its stage submits the next one. A bounded number of batches is in
flight, so worker threads never sit waiting on an upstream task, and commits happen in file
order, so the warehouse does not depend on thread timing (which batch keeps a row that two
files share, say): two runs over the same input end identical.
"""

from __future__ import annotations

import contextlib
import inspect
import pickle
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task

from salesflow import stages
from salesflow.config import Settings
from salesflow.errors import (
    RunWideError,
    StaleStagingError,
    WarehouseBusyError,
    WarehouseUnavailableError,
)
from salesflow.faults import Place, classify
from salesflow.flows.artifacts import ProgressArtifact
from salesflow.flows.caching import result_storage
from salesflow.flows.listeners import batch_listeners
from salesflow.flows.tasks import (
    as_exception,
    load_batch,
    merge_batch,
    plan_batch,
    prepare_batch,
    read_fingerprints,
    record_failure,
    retry_options,
    split_batch,
    validate_batch,
)
from salesflow.manifest import BatchManifest, BatchOutcome, BatchStatus, staging_name
from salesflow.options import ReadAs, RunOptions
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.warehouse.base import LoadPolicy, Warehouse

# Failures a fresh redo of the batch cures: staged files that are gone, or a cached stage result
# another process was still writing when this one read it (overlapping runs share the result
# store; Prefect reads an empty file as "EOFError: Ran out of input").
_REDO_FRESH = (StaleStagingError, EOFError, pickle.UnpicklingError)


class Stage(StrEnum):
    """The task a batch waits on; a batch split by region is validated per part."""

    PLAN = "plan"
    PREPARE = "extract-validate"
    SPLIT = "split"
    VALIDATE = "validate"
    MERGE = "merge"
    LOAD = "load"
    RECORD = "record"  # recording the batch's failure in `batches`


@dataclass(frozen=True)
class BatchRun:
    """What every batch of one run shares, resolved once by the flow."""

    settings: Settings  # with the run's profile applied
    options: RunOptions
    profile: ReadAs | None
    warehouse: Warehouse  # opened and prepared once for the run
    run_id: str | None
    staging_root: Path
    batch_ids: dict[Path, str]  # each source's batch identity


class _Step(NamedTuple):
    """The task a batch is waiting on."""

    stage: Stage
    position: int  # of the source in the run: the order of commits
    source: Path
    started_at: datetime
    failure: BatchOutcome | None = None  # set while recording a failure
    planned: BatchManifest | None = None  # the plan, to redo the batch if staging is stale
    fresh: bool = False  # stage results recomputed rather than taken from the cache
    part: int | None = None  # which part of a batch split by region
    attempt: int = 0  # the batch's attempt this task belongs to
    staged: BatchManifest | None = None  # the whole batch as extracted, while it is split

    def next(self, stage: Stage) -> _Step:
        return self._replace(stage=stage, failure=None)


class _StageTasks(NamedTuple):
    """The cached stage tasks, reading their results from the cache or (fresh) recomputing."""

    prepare: Task[..., BatchManifest]
    validate: Task[..., BatchManifest]  # the parts of a batch split by region


def run_batches(
    files: list[Path], run: BatchRun
) -> tuple[dict[Path, BatchOutcome], RunWideError | None]:
    """Pipeline the batches: stages run side by side, commits happen one at a time in file order.

    A batch whose cached stage results point at staged files that are gone is redone once,
    with the cache refreshed.

    A run-wide fault (a full disk, an unreachable warehouse, see faults.classify) stops the
    run: the failing batch is recorded if the warehouse can take it, no further batch starts
    or loads, and every batch that did not finish is reported as not attempted. Returns the
    outcomes and that fault.
    """
    return _Scheduler(files, run).run()


class _Scheduler:
    """The state of one run's batches, and one method per stage transition."""

    def __init__(self, files: list[Path], run: BatchRun) -> None:
        settings = run.settings
        self.shared = run
        retry = retry_options(settings)
        limit = settings.task_timeout_seconds
        cached: dict[str, Any] = {
            "result_storage": result_storage(settings),
            "cache_expiration": timedelta(hours=settings.cache_hours),
            "timeout_seconds": limit,
        }
        self.plan = plan_batch.with_options(**retry, timeout_seconds=limit)
        read = read_fingerprints.with_options(**retry, timeout_seconds=limit)
        self.loaded = read(run.warehouse)  # what every plan compares its file with
        self.stages_of = {
            fresh: _StageTasks(
                prepare_batch.with_options(**retry, **cached, refresh_cache=fresh),
                validate_batch.with_options(**cached, refresh_cache=fresh),
            )
            for fresh in (False, True)
        }
        self.load = load_batch.with_options(**retry)
        self.split_task = split_batch.with_options(timeout_seconds=limit)
        self.merge = merge_batch.with_options(timeout_seconds=limit)
        self.record = record_failure.with_options(**retry)
        self.policy = LoadPolicy(
            max_reject_share=settings.max_reject_share,
            accept_rejects=run.options.accept_rejects,
            reject_duplicates_in_warehouse=settings.reject_duplicates_in_warehouse,
            timeout_seconds=settings.load_timeout_seconds,
        )
        self.rules = ValidationRules.from_settings(settings, now=run.options.as_of)
        self.bands = TicketBands.from_settings(settings)
        self.undo_root = run.staging_root / "undo"
        self.concurrency_limit = settings.warehouse_concurrency_limit
        # On a Dask cluster only the stages go out to the workers: what reads or writes the
        # warehouse (plan, load, record) stays in this process, on a small local pool.
        self.home: ThreadPoolTaskRunner[Any] | None = None
        if settings.task_runner == "dask":
            self.home = ThreadPoolTaskRunner(max_workers=2)

        self.waiting = deque(enumerate(files))
        self.in_flight: dict[PrefectFuture[Any], _Step] = {}
        self.ready: dict[int, tuple[_Step, BatchManifest]] = {}  # validated, awaiting turn
        self.finished: set[int] = set()
        self.attempt: dict[int, int] = {}  # the batch's current attempt; older tasks are stale
        self.split: dict[int, tuple[BatchManifest, list[BatchManifest | None]]] = {}  # parts
        self.next_commit = 0
        self.outcomes: dict[Path, BatchOutcome] = {}
        self.max_staged = settings.max_workers * 2
        self.progress = ProgressArtifact(len(files))
        self.fault: RunWideError | None = None
        self.transitions: dict[Stage, Callable[[_Step, Any], None]] = {
            Stage.PLAN: self._planned,
            Stage.PREPARE: self._prepared,
            Stage.SPLIT: self._split,
            Stage.VALIDATE: self._validated,
            Stage.MERGE: self._merged,
            Stage.LOAD: self._finish,
            Stage.RECORD: self._finish,
        }

    def run(self) -> tuple[dict[Path, BatchOutcome], RunWideError | None]:
        with self.home or contextlib.nullcontext():
            self._start_batches()
            while self.in_flight:
                future = next(as_completed(list(self.in_flight)))
                step = self.in_flight.pop(future)
                future.wait()  # sets the final state; before that `.state` may read a stale one
                self._finished_task(step, future)
                self._commit_next()
                self._start_batches()
        if self.fault is not None:
            stopped = [*self.waiting, *((p, self.ready[p][0].source) for p in sorted(self.ready))]
            for position, source in stopped:
                self._finish_not_attempted(_Step(Stage.PLAN, position, source, datetime.now(UTC)))
        return self.outcomes, self.fault

    def _finished_task(self, step: _Step, future: PrefectFuture[Any]) -> None:
        """Take one finished task of a batch to the batch's next step."""
        if step.attempt != self.attempt[step.position]:
            return  # a part of a batch that failed or was redone meanwhile: nothing to do
        if self.fault is not None and step.stage != Stage.RECORD:
            self.attempt[step.position] += 1  # the run stopped: this batch goes no further
            self._finish_not_attempted(step)
        elif not (state := future.state).is_completed():
            self._failed(step, as_exception(state.result(raise_on_failure=False), state))
        else:
            self.transitions[step.stage](step, future.result())

    # --- submitting --------------------------------------------------------------------------

    def _submit(self, step: _Step, task: Task[..., Any], *args: Any) -> None:
        self.in_flight[task.submit(*args)] = step

    def _submit_home(self, step: _Step, task: Task[..., Any], *args: Any) -> None:
        """Submit a task that reads or writes the warehouse: on this process's pool."""
        if self.home is None:
            self._submit(step, task, *args)
            return
        parameters = dict(inspect.signature(task.fn).bind(*args).arguments)
        self.in_flight[self.home.submit(task, parameters=parameters)] = step

    def _start_batches(self) -> None:
        run = self.shared
        while (
            self.fault is None
            and self.waiting
            and len(self.in_flight) + len(self.ready) < self.max_staged
        ):
            position, source = self.waiting.popleft()
            self.attempt[position] = 0
            fresh = run.options.refresh_cache
            step = _Step(Stage.PLAN, position, source, datetime.now(UTC), fresh=fresh)
            batch_id = run.batch_ids[source]
            recheck = run.options.recheck
            self._submit_home(step, self.plan, source, batch_id, self.loaded, run.profile, recheck)

    def _commit_next(self) -> None:
        while self.next_commit in self.finished:
            self.next_commit += 1
        if self.fault is None and self.next_commit in self.ready:
            step, manifest = self.ready.pop(self.next_commit)
            self._submit_home(
                step.next(Stage.LOAD),
                self.load,
                manifest,
                self.shared.warehouse,
                self.shared.run_id,
                self.policy,
                self.undo_root,
                self.concurrency_limit,
            )

    # --- transitions, one per stage that finished ----------------------------------------

    def _planned(self, step: _Step, planned: BatchManifest) -> None:
        if planned.skipped:
            self.ready[step.position] = (step, planned)  # its turn records the skip
            return
        self._submit_prepare(step._replace(stage=Stage.PREPARE, planned=planned), planned)

    def _submit_prepare(self, step: _Step, planned: BatchManifest) -> None:
        self._submit(
            step,
            self.stages_of[step.fresh].prepare,
            planned,
            self.shared.staging_root,
            self.rules,
            self.bands,
            self.shared.settings.split_rows,
        )

    def _prepared(self, step: _Step, prepared: BatchManifest) -> None:
        if stages.needs_split(prepared, self.shared.settings.split_rows):
            step = step._replace(stage=Stage.SPLIT, staged=prepared)
            self._submit(step, self.split_task, prepared)
        else:
            self.ready[step.position] = (step, prepared)

    def _split(self, step: _Step, parts: list[BatchManifest]) -> None:
        assert step.staged is not None
        self.split[step.position] = (step.staged, [None] * len(parts))
        for number, part in enumerate(parts):
            validate = self.stages_of[step.fresh].validate
            part_step = step._replace(stage=Stage.VALIDATE, part=number)
            self._submit(part_step, validate, part, self.rules, self.bands)

    def _validated(self, step: _Step, checked: BatchManifest) -> None:
        """One part of a split batch validated (a whole batch is validated by extract-validate);
        the last part sends them all to merge."""
        assert step.part is not None
        whole, parts_done = self.split[step.position]
        parts_done[step.part] = checked
        if all(part is not None for part in parts_done):
            del self.split[step.position]
            parts = [part for part in parts_done if part is not None]
            self._submit(step._replace(stage=Stage.MERGE, part=None), self.merge, whole, parts)

    def _merged(self, step: _Step, merged: BatchManifest) -> None:
        self.ready[step.position] = (step, merged)

    def _failed(self, step: _Step, error: BaseException) -> None:
        """A task of the batch failed: redo it fresh, or record its failure, or (when even
        that failed) finish it with both errors. A run-wide fault stops the run."""
        run = self.shared
        self.attempt[step.position] += 1  # the batch's other parts in flight no longer count
        self.split.pop(step.position, None)
        batch_id = run.batch_ids[step.source]
        run_wide = _run_wide(error, run.warehouse.location, batch_id)
        if run_wide is not None and self.fault is None:
            self.fault = run_wide
            error = run_wide
        attempt = self.attempt[step.position]
        if isinstance(error, _REDO_FRESH) and not step.fresh and step.planned:
            redo = step._replace(stage=Stage.PREPARE, fresh=True, part=None, attempt=attempt)
            self._submit_prepare(redo, step.planned)
        elif step.failure is not None:  # the warehouse could not even record the failure
            note = f"{step.failure.error} (not recorded in batches: {error})"
            self._finish(step, step.failure.model_copy(update={"error": note}))
        else:
            failure = stages.failed_outcome(
                step.source, error, step.started_at, run.run_id, batch_id
            )
            following = step._replace(
                stage=Stage.RECORD, failure=failure, part=None, attempt=attempt
            )
            self._submit_home(
                following, self.record, failure, run.warehouse, self.concurrency_limit
            )

    def _finish(self, step: _Step, outcome: BatchOutcome) -> None:
        self.outcomes[step.source] = outcome
        self.finished.add(step.position)
        self.progress.advance()
        if outcome.status not in (BatchStatus.FAILED, BatchStatus.NOT_ATTEMPTED):
            # Only this run's own staged files; a batch not loaded keeps them for the cache.
            batch_id = self.shared.batch_ids[step.source]
            shutil.rmtree(self.shared.staging_root / staging_name(batch_id), ignore_errors=True)
        batch_listeners.notify(outcome)

    def _finish_not_attempted(self, step: _Step) -> None:
        """A batch the run did not load because a run-wide fault stopped it first; nothing of
        it was written, so the next run takes it up as if new (its cached stages are reused)."""
        assert self.fault is not None
        outcome = BatchOutcome(
            batch_id=self.shared.batch_ids[step.source],
            source=str(step.source),
            sha256=None,
            status=BatchStatus.NOT_ATTEMPTED,
            error=f"{step.source}: not attempted, the run stopped: {self.fault}",
            started_at=step.started_at,
            finished_at=datetime.now(UTC),
            flow_run_id=self.shared.run_id,
        )
        self._finish(step, outcome)


def _run_wide(error: BaseException, location: str, batch_id: str) -> RunWideError | None:
    """The run-wide fault a failed task stands for: one its task already named (a full
    disk, a denied permission), or a warehouse that stayed unreachable, or held by another
    program, through all the retries. Anything else is the batch's own failure."""
    if isinstance(error, RunWideError):
        return error
    if isinstance(error, WarehouseUnavailableError | WarehouseBusyError):
        return classify(error, Place.WAREHOUSE, location, batch_id)
    return None
