"""The `salesflow-backfill` flow: one `salesflow-etl` run per planned day, a few days at a time.

Days run as child flow runs from tasks on a thread pool, so the cap on days in flight is the
pool's size; each day's flow commits its batches in file order as always.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.flows.listeners import Listeners
from salesflow.options import RunOptions
from salesflow.run_summary import RunSummary

BACKFILL_FLOW_NAME = "salesflow-backfill"


class DayResult(BaseModel):
    day: date
    summary: RunSummary | None = None
    error: str | None = None


_day_listeners: Listeners[DayResult] = Listeners()


def on_day_finished(listener: Callable[[DayResult], None]) -> AbstractContextManager[None]:
    """Call `listener` with each day's result as it finishes (the CLI's progress bar)."""
    return _day_listeners.listening(listener)


@task(name="backfill-day", cache_policy=NO_CACHE, persist_result=False)
def backfill_day(
    day: date, files: list[Path], settings: Settings, options: RunOptions
) -> DayResult:
    """Load one day's files as its own salesflow-etl flow run. The files lie in the landing
    folder (backfill.files_by_day), so that folder is their landing root: batch ids are their
    names, as the plan reads them."""
    root = files[0].parent if files else None
    summary = run_etl(files, settings, options.model_copy(update={"landing_root": root}))
    return DayResult(day=day, summary=summary)


@flow(name=BACKFILL_FLOW_NAME, persist_result=False)
def backfill_flow(
    days: dict[date, list[Path]], settings: Settings, options: RunOptions = RunOptions()
) -> list[DayResult]:
    """Run the planned days, at most `settings.max_days_in_flight` at once."""
    logger = get_run_logger()
    logger.info("backfill days=%d first=%s last=%s", len(days), min(days), max(days))
    futures = {
        backfill_day.submit(day, files, settings, options): day
        for day, files in sorted(days.items())
    }
    results: dict[date, DayResult] = {}
    for future in as_completed(list(futures)):
        future.wait()
        day = futures[future]
        state = future.state
        if state.is_completed():
            result = future.result()
        else:
            error = state.result(raise_on_failure=False)
            result = DayResult(day=day, error=str(error) or state.message)
            logger.error("backfill day=%s failed error=%r", day, result.error)
        results[day] = result
        _day_listeners.notify(result)
    return [results[day] for day in sorted(results)]


def run_backfill(
    days: dict[date, list[Path]], settings: Settings, options: RunOptions = RunOptions()
) -> list[DayResult]:
    """Run the backfill flow with a pool of `max_days_in_flight` threads; `options` apply to
    every day's run (each day's landing root is its files' folder)."""
    runner: Any = ThreadPoolTaskRunner(max_workers=settings.max_days_in_flight)
    return backfill_flow.with_options(task_runner=runner)(
        days=days, settings=settings, options=options
    )
