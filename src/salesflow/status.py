"""What happened lately: flow runs from the Prefect API joined with what the warehouse recorded.

Prefect knows runs, states and times; the warehouse knows batches, rows and money.
`run_statuses` joins them by flow run id for `salesflow status` (`flows.run_history` reads the
runs from Prefect); `read_quality_window` reads a window of days for the scheduled quality report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from salesflow.errors import UsageError
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.quality import SAMPLE_ROWS
from salesflow.warehouse import DATABASE_ERRORS
from salesflow.warehouse.base import Warehouse, error_line


@dataclass
class RunCounts:
    """Batches and rows of one flow run (and its salesflow-etl subflows), from the warehouse."""

    loaded: int = 0
    skipped: int = 0
    failed: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0

    def add(self, other: RunCounts) -> None:
        self.loaded += other.loaded
        self.skipped += other.skipped
        self.failed += other.failed
        self.rows_loaded += other.rows_loaded
        self.rows_rejected += other.rows_rejected


@dataclass(frozen=True)
class RunStatus:
    """One line of `salesflow status`."""

    flow_run_id: str
    flow_name: str
    run_name: str
    state: str
    started_at: datetime | None
    duration: timedelta | None
    counts: RunCounts | None  # None: the warehouse has no record of it (yet)


def run_statuses(
    warehouse: Warehouse,
    runs: Sequence[Any],
    flow_names: Mapping[Any, str],
    children: Sequence[Any],
    task_runs: Sequence[Any],
) -> list[RunStatus]:
    """`salesflow status`'s lines: top-level flow `runs` (as the Prefect API returns them, newest
    first) with the warehouse counts of each and of its subflow runs, rolled up.

    `children` are the subflow runs of `runs`, and `task_runs` the tasks that started them: a
    subflow names its parent task, the task its flow run. Plain attribute access only, so the
    join needs no Prefect import (`flows.run_history` does the asking).
    """
    parent_of_task = {task.id: task.flow_run_id for task in task_runs}
    family: dict[str, list[str]] = {str(run.id): [str(run.id)] for run in runs}
    for child in children:
        parent = parent_of_task.get(child.parent_task_run_id)
        if parent is not None and str(parent) in family:
            family[str(parent)].append(str(child.id))
    counts = warehouse_counts(warehouse, [run_id for ids in family.values() for run_id in ids])
    now = datetime.now(UTC)
    statuses = []
    for run in runs:
        found = [counts[run_id] for run_id in family[str(run.id)] if run_id in counts]
        total = None
        if found:
            total = RunCounts()
            for part in found:
                total.add(part)
        start = run.start_time
        end = run.end_time or (now if start and run.state and not run.state.is_final() else None)
        statuses.append(
            RunStatus(
                flow_run_id=str(run.id),
                flow_name=flow_names.get(run.flow_id, str(run.flow_id)),
                run_name=run.name,
                state=(run.state.name or str(run.state.type)) if run.state else "",
                started_at=start,
                duration=timedelta(seconds=(end - start).total_seconds())
                if start and end
                else None,
                counts=total,
            )
        )
    return statuses


def warehouse_counts(warehouse: Warehouse, flow_run_ids: list[str]) -> dict[str, RunCounts]:
    """Counts per flow run: the `runs` record once a run ended, its batches while it runs.

    `runs` keeps each run's counts as they were when it ended; `batches` only knows the latest
    attempt at each file (a later run that skips a file takes it over), so it serves only runs
    that have no record yet.
    """
    if not flow_run_ids or not warehouse.holds_data():
        return {}
    try:
        rows = warehouse.fetch(
            "SELECT flow_run_id, loaded, skipped, failed, rows_loaded, rows_rejected FROM runs "
            "WHERE list_contains(?, flow_run_id) "
            "UNION ALL "
            "SELECT flow_run_id, count(*) FILTER (WHERE status = 'loaded'), "
            "count(*) FILTER (WHERE status = 'skipped'), "
            "count(*) FILTER (WHERE status = 'failed'), "
            "coalesce(sum(rows_loaded) FILTER (WHERE status = 'loaded'), 0), "
            "coalesce(sum(rows_rejected) FILTER (WHERE status = 'loaded'), 0) FROM batches "
            "WHERE list_contains(?, flow_run_id) "
            "AND flow_run_id NOT IN (SELECT flow_run_id FROM runs) GROUP BY flow_run_id",
            [flow_run_ids, flow_run_ids],
        )
    except DATABASE_ERRORS as error:
        raise UsageError(
            f"{warehouse.location}: cannot read the warehouse ({error_line(error)})"
        ) from None
    return {
        str(run_id): RunCounts(int(a), int(b), int(c), int(d), int(e))
        for run_id, a, b, c, d, e in rows
    }


@dataclass
class QualityWindow:
    """The warehouse over a window of days, in the shapes quality.py reports on."""

    first: date
    last: date
    outcomes: list[BatchOutcome] = field(default_factory=list)
    samples: list[tuple[str, int, list[str], str]] = field(default_factory=list)
    money: list[tuple[date, int, int, Decimal, Decimal]] = field(default_factory=list)

    def money_markdown(self) -> str:
        """Orders, units, net revenue and returns per order date, as a Markdown table."""
        if not self.money:
            return "No orders dated in these days.\n\n"
        lines = [
            "## Sales by day",
            "",
            "| day | orders | units | net revenue | returns |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {day} | {orders:,} | {units:,} | {revenue:,.2f} | {returns:,.2f} |"
            for day, orders, units, revenue, returns in self.money
        ]
        return "\n".join(lines) + "\n\n"


def read_quality_window(
    warehouse: Warehouse, first: date, last: date, timezone: str = "UTC"
) -> QualityWindow:
    """Orders dated first..last, the batches holding them, and batches that failed meanwhile.

    A batch whose latest attempt was an unchanged skip still has its content loaded, so it counts
    as loaded here. Batch ids sort in byte order on both warehouses, whatever the collation.
    """
    window = QualityWindow(first, last)
    if not warehouse.holds_data():
        return window
    zone = ZoneInfo(timezone)
    since = datetime.combine(first, time(), zone)
    until = datetime.combine(last + timedelta(days=1), time(), zone)
    # Parameters: first, last, since, until (each query below uses the scope once).
    scope = (
        "SELECT DISTINCT batch_id FROM sales WHERE order_date BETWEEN ? AND ? "
        "UNION SELECT batch_id FROM batches WHERE status = 'failed' "
        "AND finished_at >= ? AND finished_at < ?"
    )
    params: list[Any] = [first, last, since, until]
    try:
        batches = warehouse.fetch(
            "SELECT batch_id, source, sha256, status, rows_in, rows_loaded, rows_rejected, "
            "amount_loaded, error, started_at, finished_at, flow_run_id FROM batches "
            f'WHERE batch_id IN ({scope}) ORDER BY batch_id COLLATE "C"',
            params,
        )
        reasons = warehouse.fetch(
            "SELECT batch_id, reason, count(*) FROM (SELECT batch_id, unnest(reasons) AS "
            f"reason FROM sales_rejected WHERE batch_id IN ({scope})) AS rejected "
            "GROUP BY batch_id, reason",
            params,
        )
        window.samples = [
            (str(batch), int(row), list(codes), str(raw))
            for batch, row, codes, raw in warehouse.fetch(
                "SELECT batch_id, source_row, reasons, raw FROM sales_rejected "
                f'WHERE batch_id IN ({scope}) ORDER BY batch_id COLLATE "C", source_row '
                f"LIMIT {SAMPLE_ROWS}",
                params,
            )
        ]
        window.money = [
            (day, int(orders), int(units), Decimal(revenue), Decimal(returns))
            for day, orders, units, revenue, returns in warehouse.fetch(
                "SELECT order_date, count(DISTINCT order_id), sum(quantity), sum(total), "
                "coalesce(sum(-total) FILTER (WHERE quantity < 0), 0) FROM sales "
                "WHERE order_date BETWEEN ? AND ? GROUP BY order_date ORDER BY order_date",
                [first, last],
            )
        ]
    except DATABASE_ERRORS as error:
        raise UsageError(
            f"{warehouse.location}: cannot read the warehouse ({error_line(error)})"
        ) from None
    by_batch: dict[str, Counter[str]] = defaultdict(Counter)
    for batch, reason, count in reasons:
        by_batch[batch][reason] = int(count)
    for row in batches:
        batch_id, source, sha256, status, rows_in, loaded, rejected, amount = row[:8]
        batch_error, started_at, finished_at, flow_run_id = row[8:]
        window.outcomes.append(
            BatchOutcome(
                batch_id=batch_id,
                source=source,
                sha256=sha256,
                status=BatchStatus.FAILED if status == "failed" else BatchStatus.LOADED,
                rows_in=rows_in,
                rows_loaded=loaded,
                rows_rejected=rejected,
                amount_loaded=amount,
                error=batch_error,
                reason_counts=dict(by_batch[batch_id].most_common()),
                started_at=started_at,
                finished_at=finished_at,
                flow_run_id=flow_run_id,
            )
        )
    return window
