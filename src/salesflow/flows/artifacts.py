"""Prefect artifacts of a run: the quality report, the batches table and the KPI anomalies,
under stable keys so the Prefect UI shows their history run after run; and one Prefect event per
anomaly, for an automation to react to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event

from salesflow.anomalies import Anomaly, anomalies_markdown
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.quality import SAMPLE_ROWS, batches_table, quality_markdown
from salesflow.warehouse.base import Warehouse

QUALITY_KEY = "salesflow-quality"
REPORT_KEY = "salesflow-report"
BATCHES_KEY = "salesflow-batches"
ANOMALIES_KEY = "salesflow-anomalies"
PROGRESS_KEY = "salesflow-progress"
ANOMALY_EVENT = "salesflow.kpi.anomaly"


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


def publish_anomalies(found: Sequence[Anomaly], dates: Sequence[date], warehouse: str) -> None:
    """The anomalies artifact (also when none were found: its history shows the check ran),
    then one `salesflow.kpi.anomaly` event per anomaly, its resource the region's KPI."""
    create_markdown_artifact(
        key=ANOMALIES_KEY,
        markdown=anomalies_markdown(found, dates),
        description="KPIs of the loaded days far from their trailing window (robust z-score).",
    )
    for anomaly in found:
        emit_event(
            event=ANOMALY_EVENT,
            resource={
                "prefect.resource.id": f"salesflow.kpi.{anomaly.region}.{anomaly.kpi}",
                "prefect.resource.name": f"{anomaly.kpi} of {anomaly.region}",
                "salesflow.region": anomaly.region,
                "salesflow.kpi": anomaly.kpi,
            },
            payload={"warehouse": warehouse, **anomaly.model_dump(mode="json")},
        )


def publish_report_link(report: Path) -> None:
    """A link artifact to the HTML report this run wrote (a file:// address: it opens in a
    browser on the machine, or a share, that holds the file)."""
    create_link_artifact(
        key=REPORT_KEY,
        link=report.resolve().as_uri(),
        link_text=f"salesflow report: {report.name}",
        description="Charts of the warehouse after this run: revenue, regions, quality, anomalies.",
    )


class ProgressArtifact:
    """The run's progress artifact: share of batches finished, updated at most every
    `STEP_PERCENT` points (every batch when batches are fewer), so a run of thousands of
    batches costs a few dozen API calls. Progress is a courtesy: a failing update is logged
    and the rest are skipped, the run goes on."""

    STEP_PERCENT = 5.0

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.shown = 0.0
        self.artifact_id: Any = None
        if total:
            self._call(
                create_progress_artifact,
                progress=0.0,
                key=PROGRESS_KEY,
                description=f"Batches finished, of {total}.",
            )

    def advance(self) -> None:
        self.done += 1
        percent = 100.0 * self.done / self.total
        if self.artifact_id is None:
            return
        if percent >= 100.0 or percent - self.shown >= self.STEP_PERCENT:
            self.shown = percent
            self._call(update_progress_artifact, artifact_id=self.artifact_id, progress=percent)

    def _call(self, publish: Callable[..., Any], **arguments: Any) -> None:
        try:
            self.artifact_id = publish(**arguments)
        except Exception as error:
            self.artifact_id = None
            get_run_logger().warning("progress artifact not updated: %s", error)
