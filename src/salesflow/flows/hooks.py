"""Flow state hooks: every run of salesflow-etl leaves a record in the warehouse's `runs` table,
whether it completed, failed or crashed, so operators can audit runs without Prefect's database."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.states import State

from salesflow.config import Settings, load_settings
from salesflow.warehouse import open_warehouse


def record_run(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """on_completion / on_failure / on_crashed hook: write the run's record."""
    try:
        location = warehouse_of(flow_run.parameters)
        message = None if state.is_completed() else state.message
        open_warehouse(location).record_run(
            str(flow_run.id),
            flow.name,
            state.name or str(state.type),
            flow_run.start_time,
            message,
        )
    except Exception as error:  # a hook must never hide the run's own outcome
        get_run_logger().error("run record not written: %s", error)


def warehouse_of(parameters: dict[str, Any]) -> str:
    """The warehouse a run wrote to, from its parameters."""
    if parameters.get("warehouse"):
        return str(parameters["warehouse"])
    given = parameters.get("settings")
    if isinstance(given, Settings):
        settings = given
    elif isinstance(given, dict):
        settings = load_settings(**given)
    else:
        settings = load_settings()
    return str(settings.warehouse_path)
