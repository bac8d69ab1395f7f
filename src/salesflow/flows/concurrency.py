"""A Prefect global concurrency limit around warehouse writes.

Inside one machine the warehouse's own file lock already serialises writers. The global limit is
what protects the warehouse when flow runs of several processes or machines overlap on one
Prefect server (a served deployment, a worker and a manual run, say): each load holds a slot, so
at most `limit` loads write at once, and the rest wait their turn in Prefect instead of failing
on the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

# One writer at a time by default: DuckDB has a single writer. An operator may raise it on the
# server (`prefect gcl update salesflow-warehouse --limit N`) for a warehouse that takes more;
# salesflow never lowers or raises a limit that exists.
DEFAULT_SLOTS = 1


def ensure_limit(name: str | None) -> None:
    """Create the limit with one slot if the Prefect API does not have it yet."""
    if not name:
        return
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it meanwhile
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=DEFAULT_SLOTS)
                )


@contextmanager
def warehouse_slot(name: str | None) -> Iterator[None]:
    """Hold one slot of the limit while writing to the warehouse (nothing when disabled)."""
    if not name:
        yield
        return
    with concurrency(name, occupy=1, strict=True):
        yield
