"""What one load run did, batch by batch: the flows return it, the CLI and status read it.

Plain data (no Prefect), so anything that prints or checks a run can import it cheaply.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from salesflow.manifest import BatchOutcome, BatchStatus


class RunSummary(BaseModel):
    """What one run of the flow did, batch by batch, in source order."""

    warehouse: str
    flow_run_id: str | None
    outcomes: list[BatchOutcome]
    fault: str | None = None  # the run-wide fault that stopped the run early, if any

    def count(self, status: BatchStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def failed(self) -> list[BatchOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == BatchStatus.FAILED]

    @property
    def loaded(self) -> list[BatchOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == BatchStatus.LOADED]

    @property
    def rows_in(self) -> int:
        return sum(o.rows_in or 0 for o in self.loaded)

    @property
    def rows_loaded(self) -> int:
        return sum(o.rows_loaded for o in self.loaded)

    @property
    def rows_rejected(self) -> int:
        return sum(o.rows_rejected for o in self.loaded)

    @property
    def amount_loaded(self) -> Decimal:
        return sum((o.amount_loaded for o in self.loaded), Decimal(0))
