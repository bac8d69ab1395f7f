"""The task runner a run uses: threads on this machine by default, or a Dask cluster.

Whatever the runner, the flow keeps the commits to the warehouse one at a time in file order;
only extract, validate and transform spread out. On Dask, tasks run in worker processes (on
other machines too), so staged files and result storage must be on a path every worker and the
flow see (`staging_dir`, `result_storage`).
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from prefect.task_runners import ThreadPoolTaskRunner

from salesflow.config import Settings
from salesflow.errors import UsageError, UserError


def task_runner_for(settings: Settings) -> Any:
    """A fresh task runner for one flow run, from `task_runner` and `dask_address`."""
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:  # pragma: no cover - prefect-dask is a dependency
        raise UsageError("task_runner=dask needs prefect-dask: pip install prefect-dask") from None
    if settings.dask_address:
        _require_reachable(settings.dask_address)
        return DaskTaskRunner(address=settings.dask_address)
    # A local distributed cluster: one single-threaded worker process per batch in flight.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.max_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


def _require_reachable(address: str, timeout_seconds: float = 5.0) -> None:
    """Fail in one line, before the flow starts, if the scheduler does not answer: Dask itself
    would wait 30 s and end the run with a traceback."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        raise UsageError(f"dask_address {address!r}: not a scheduler address") from None
    if parts.scheme not in ("tcp", "tls") or not host:
        raise UsageError(f"dask_address {address!r}: expected tcp://host:port")
    try:
        socket.create_connection((host, port), timeout=timeout_seconds).close()
    except OSError as error:
        raise UserError(
            f"cannot reach the Dask scheduler at {address} ({error.strerror or error}); "
            "start it (`dask scheduler`) or leave dask_address unset for a local cluster"
        ) from None
