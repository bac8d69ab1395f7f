"""Backfill planning: which days of a landing folder to (re)load, decided from the warehouse.

The plan is a pure function of the folder and the `batches` table, so a backfill that was
interrupted continues where it stopped when the same command runs again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path

from salesflow.errors import UsageError
from salesflow.sources.files import source_format
from salesflow.warehouse.base import Warehouse

_DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class Reprocess(StrEnum):
    """Which days a backfill runs."""

    MISSING = "missing"  # days with a file that is not loaded (never, failed, or changed)
    FAILED = "failed"  # only days whose latest attempt failed
    ALL = "all"  # every day with a file, reloaded even if unchanged


@dataclass(frozen=True)
class DayPlan:
    day: date
    files: tuple[Path, ...]
    state: str  # loaded / failed / partial / new / no file
    run: bool


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def files_by_day(landing: Path) -> dict[date, list[Path]]:
    """Supported files of the landing folder, keyed by the YYYY-MM-DD in their names."""
    if not landing.is_dir():
        raise UsageError(f"{landing}: no such landing folder")
    found: dict[date, list[Path]] = {}
    for path in sorted(landing.iterdir()):
        match = _DAY_IN_NAME.search(path.name)
        if not (path.is_file() and source_format(path) and match):
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            continue
        found.setdefault(day, []).append(path.absolute())
    return found


def plan_backfill(
    landing: Path, start: date, end: date, reprocess: Reprocess, warehouse: Warehouse
) -> list[DayPlan]:
    """One entry per day from start to end: its files, their state, and whether to run it."""
    by_day = files_by_day(landing)
    statuses = _latest_statuses(warehouse)
    plan = []
    for day in days_between(start, end):
        files = tuple(by_day.get(day, []))
        state = _day_state(files, statuses)
        if not files:
            run = False
        elif reprocess == Reprocess.ALL:
            run = True
        elif reprocess == Reprocess.FAILED:
            run = state in {"failed", "partial"}
        else:
            run = state != "loaded"
        plan.append(DayPlan(day, files, state, run))
    return plan


def _latest_statuses(warehouse: Warehouse) -> dict[str, tuple[str, str | None]]:
    """batch_id -> (status, sha256) as the warehouse knows them; empty for a new warehouse."""
    if not warehouse.holds_data():  # no warehouse or no tables yet: nothing is loaded
        return {}
    rows = warehouse.fetch("SELECT batch_id, status, sha256 FROM batches")
    return {str(batch): (str(status), sha) for batch, status, sha in rows}


def _day_state(files: tuple[Path, ...], statuses: dict[str, tuple[str, str | None]]) -> str:
    if not files:
        return "no file"
    states = [statuses.get(path.name, ("new", None))[0] for path in files]
    if all(state in {"loaded", "skipped"} for state in states):
        return "loaded"
    if any(state == "failed" for state in states):
        return "failed"
    if all(state == "new" for state in states):
        return "new"
    return "partial"
