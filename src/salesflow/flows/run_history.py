"""The flow runs `salesflow status` lists, read from the Prefect API.

Only the asking lives here; joining the runs with the warehouse's counts is `status.run_statuses`,
which needs no Prefect.
"""

from __future__ import annotations

from typing import Any

from salesflow.errors import PrefectApiError
from salesflow.status import RunStatus, run_statuses
from salesflow.warehouse.base import Warehouse

# The flows whose runs `salesflow status` lists (subflows are rolled up into their parent).
SALESFLOW_FLOWS = (
    "salesflow-etl",
    "salesflow-backfill",
    "salesflow-daily",
    "salesflow-poll",
    "salesflow-quality-report",
    "salesflow-oltp",
)
_PAGE = 200  # the Prefect API's largest page


def recent_runs(warehouse: Warehouse, limit: int) -> list[RunStatus]:
    """The latest `limit` top-level salesflow flow runs with their warehouse counts, newest first.

    Scheduled (future and late) runs are left out: the Prefect UI shows those.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterParentTaskRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterId,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        if (problem := client.api_healthcheck()) is not None:
            # check_prefect has seen it answer: it failed since, or answers with an error.
            reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
            url = client.api_url
            raise PrefectApiError(f"Prefect API unreachable at {url} ({reason})")
        flows = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=SALESFLOW_FLOWS)))
        names = {flow.id: flow.name for flow in flows}
        if not names:
            return []
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=SALESFLOW_FLOWS)),
            flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED])
                ),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        children: list[Any] = []
        while runs:
            page = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id for run in runs])
                ),
                limit=_PAGE,
                offset=len(children),
            )
            children += page
            if len(page) < _PAGE:
                break
        parent_tasks = {child.parent_task_run_id for child in children} - {None}
        task_runs = (
            client.read_task_runs(
                task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=list(parent_tasks)))
            )
            if parent_tasks
            else []
        )
    return run_statuses(warehouse, runs, names, children, task_runs)
