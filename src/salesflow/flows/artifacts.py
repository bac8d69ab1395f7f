"""Prefect artifacts of a run: the quality report and the batches table, under stable keys so
the Prefect UI shows their history run after run."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.quality import SAMPLE_ROWS, batches_table, quality_markdown
from salesflow.warehouse.base import Warehouse

QUALITY_KEY = "salesflow-quality"
BATCHES_KEY = "salesflow-batches"


def publish_run_artifacts(outcomes: Sequence[BatchOutcome], warehouse: Warehouse) -> None:
    """Publish the quality report and the batches table of this run."""
    loaded = [o.batch_id for o in outcomes if o.status == BatchStatus.LOADED]
    samples = []
    if loaded:
        samples = [
            (str(batch), int(row), list(reasons), str(raw))
            for batch, row, reasons, raw in warehouse.fetch(
                "SELECT batch_id, source_row, reasons, raw FROM sales_rejected "
                "WHERE list_contains(?, batch_id) ORDER BY batch_id, source_row LIMIT ?",
                [loaded, SAMPLE_ROWS],
            )
        ]
    create_markdown_artifact(
        key=QUALITY_KEY,
        markdown=quality_markdown(outcomes, samples),
        description="Rows loaded and rejected, by reason and by file, with a sample.",
    )
    create_table_artifact(
        key=BATCHES_KEY,
        table=batches_table(outcomes),
        description="Every batch of the run with its counts and reconciliation.",
    )
