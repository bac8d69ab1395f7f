"""The warehouse interface every destination implements, and the SQL they share.

A destination is a plug-in (DuckDB now, PostgreSQL later): the flow speaks only this interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from salesflow.errors import ReconciliationError
from salesflow.manifest import BatchManifest, BatchOutcome

# The daily_sales mart, recomputed for the order dates a load touched.
DAILY_SALES_SELECT = """
SELECT order_date, region, category,
       count(DISTINCT order_id) AS orders,
       sum(quantity) AS units,
       sum(total) AS net_revenue,
       coalesce(sum(-total) FILTER (WHERE quantity < 0), 0) AS returns_value
FROM sales
"""

# How tables are ordered for a checksum: by their natural key.
TABLE_KEYS: dict[str, str] = {
    "sales": "batch_id, source_row",
    "sales_rejected": "batch_id, source_row",
    "daily_sales": "order_date, region, category",
    "batches": "batch_id",
}


class Warehouse(Protocol):
    """What the flow needs of a warehouse."""

    location: str

    def ensure_schema(self) -> None:
        """Create the public tables if they do not exist."""

    def loaded_sha256(self, batch_id: str) -> str | None:
        """sha256 of the source whose rows are loaded for this batch, if any."""

    def load_batch(self, manifest: BatchManifest, flow_run_id: str | None) -> BatchOutcome:
        """Replace the batch's rows atomically, reconcile, refresh marts, record the batch."""

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """Record a failed or skipped batch without touching its loaded rows."""

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read-only query."""

    def table_checksum(self, table: str) -> str:
        """A checksum of a table's content, in its natural key order."""


def reconcile(manifest: BatchManifest, loaded: int, rejected: int, amount: Any) -> None:
    """Fail the batch unless what the warehouse holds matches what the pipeline counted."""
    problems = []
    if loaded + rejected != manifest.rows_in:
        problems.append(
            f"rows_in {manifest.rows_in} != rows_loaded {loaded} + rows_rejected {rejected}"
        )
    if loaded != manifest.rows_valid:
        problems.append(f"rows_loaded {loaded} != rows validated {manifest.rows_valid}")
    if rejected != manifest.rows_rejected:
        problems.append(f"rows_rejected {rejected} != rows quarantined {manifest.rows_rejected}")
    if amount != manifest.amount:
        problems.append(f"amount loaded {amount} != amount transformed {manifest.amount}")
    if problems:
        raise ReconciliationError(
            manifest.source, "reconciliation failed, batch not committed: " + "; ".join(problems)
        )
