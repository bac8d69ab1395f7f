"""Flow state hooks: every run of salesflow-etl leaves a record in the warehouse's `runs` table,
whether it completed, failed or crashed, so operators can audit runs without Prefect's database;
and, when a webhook is configured, a notification of how it ended."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.states import State
from prefect.utilities.urls import url_for

from salesflow.config import Settings, load_settings
from salesflow.notify import build_payload, redact, run_failed, secrets_of, send_webhook
from salesflow.options import RunOptions
from salesflow.warehouse import open_warehouse
from salesflow.warehouse.base import RunRecord

FAILURES_NAMED = 3  # failed batches quoted in a notification; the rest are counted


def run_hooks() -> dict[str, Any]:
    """The state hooks of a loading flow (its parameters name `settings` and `options`):
    record the run however it ends, and notify."""
    hooks = [record_run, notify_run]
    return {"on_completion": hooks, "on_failure": hooks, "on_crashed": hooks}


def record_run(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """on_completion / on_failure / on_crashed hook: write the run's record."""
    try:
        location = warehouse_of(flow_run.parameters)
        message = None if state.is_completed() else state.message
        run = RunRecord(
            str(flow_run.id), flow.name, state.name or str(state.type), flow_run.start_time, message
        )
        open_warehouse(location).record_run(run)
    except Exception as error:  # a hook must never hide the run's own outcome
        get_run_logger().error("run record not written: %s", error)


def notify_run(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """on_completion / on_failure / on_crashed hook: report the run to `webhook_url`, if set.

    Reports failures (a failed run or any failed batch), or every run with notify_on=always.
    The webhook comes from this process's settings, not the run's parameters: Prefect only ever
    sees secrets masked. Nothing here can fail the run; trouble is a warning in its log.
    """
    logger = _hook_logger()
    secrets: list[str] = []
    try:
        settings = load_settings()
        if settings.webhook_url is None:
            return
        secrets = secrets_of(settings)
        counts, failures = _batch_results(flow_run, logger, secrets)
        state_name = state.name or str(state.type)
        if not run_failed(state_name, counts) and settings.notify_on != "always":
            return
        messages = [] if state.is_completed() or not state.message else [state.message]
        messages += failures[:FAILURES_NAMED]
        if len(failures) > FAILURES_NAMED:
            messages.append(f"and {len(failures) - FAILURES_NAMED} more failed batches")
        payload = build_payload(
            flow.name,
            flow_run.name,
            state_name,
            "; ".join(messages),
            counts,
            url_for(flow_run) or None,
            secrets,
        )
        send_webhook(settings.webhook_url.get_secret_value(), payload, logger=logger)
    except Exception as error:  # a hook must never hide the run's own outcome
        logger.warning("run notification not sent: %s", redact(str(error), secrets))


def _hook_logger() -> Any:
    """The run's logger (its lines reach the Prefect UI), or a plain one when a hook runs
    outside the run's context (a crash reported by another process)."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger(__name__)


def _batch_results(
    flow_run: FlowRun, logger: Any, secrets: list[str]
) -> tuple[dict[str, int | Decimal], list[str]]:
    """The run's counts (as in `runs`) and its failed batches' errors, from `batches`.

    Empty when the warehouse cannot be read (the run may have failed because of it): the
    notification then carries the run's own state message.
    """
    try:
        rows = open_warehouse(warehouse_of(flow_run.parameters)).fetch(
            "SELECT status, rows_in, rows_loaded, rows_rejected, amount_loaded, error "
            "FROM batches WHERE flow_run_id = ? ORDER BY batch_id",
            [str(flow_run.id)],
        )
    except Exception as error:
        logger.warning("notification without batch counts: %s", redact(str(error), secrets))
        return {}, []
    loaded = [row for row in rows if row[0] == "loaded"]
    counts: dict[str, int | Decimal] = {
        "batches": len(rows),
        "loaded": len(loaded),
        "skipped": sum(1 for row in rows if row[0] == "skipped"),
        "failed": sum(1 for row in rows if row[0] == "failed"),
        "rows_in": sum(row[1] or 0 for row in loaded),
        "rows_loaded": sum(row[2] or 0 for row in loaded),
        "rows_rejected": sum(row[3] or 0 for row in loaded),
        "amount_loaded": sum((row[4] or Decimal(0) for row in loaded), Decimal(0)),
    }
    failures = [str(row[5]) for row in rows if row[0] == "failed" and row[5]]
    return counts, failures


def warehouse_of(parameters: dict[str, Any]) -> str:
    """The warehouse a run wrote to, from its parameters (as given, or as the API holds them)."""
    options = parameters.get("options")
    if isinstance(options, dict):
        options = RunOptions.model_validate(options)
    if isinstance(options, RunOptions) and options.warehouse:
        return options.warehouse
    given = parameters.get("settings")
    if isinstance(given, Settings):
        settings = given
    elif isinstance(given, dict):
        settings = load_settings(**given)
    else:
        settings = load_settings()
    return settings.warehouse_location
