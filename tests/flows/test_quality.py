"""Data-quality behaviour of whole runs: reject thresholds, cross-batch duplicates, recovery after
a failed batch, and the artifacts a run publishes to Prefect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from salesflow.config import Settings
from salesflow.flows.artifacts import BATCHES_KEY, QUALITY_KEY
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.run_summary import RunSummary
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

GOOD_ROWS = [
    f"O{n},2024-02-0{1 + n % 5}T10:00:00,C{n},S{n},P,Home,{n},2.50,North" for n in range(1, 19)
]


def tables(summary: RunSummary) -> dict[str, str]:
    warehouse = DuckDBWarehouse(summary.warehouse)
    return {t: warehouse.table_checksum(t) for t in ("sales", "sales_rejected", "daily_sales")}


def test_a_batch_rejecting_too_much_fails_whole_unless_accepted(
    tmp_path: Path, settings: Settings
) -> None:
    dirty = write_csv(
        tmp_path / "in" / "dirty.csv",
        CANONICAL_HEADER,
        *GOOD_ROWS,
        "O90,2024-02-01,C1,S1,P,Home,0,2.50,North",
        "O91,2024-02-01,C1,S1,P,Home,1,-2.50,",
    )

    refused = run_etl([dirty], settings)

    (outcome,) = refused.outcomes
    assert outcome.status == BatchStatus.FAILED
    assert outcome.error == (
        f"{dirty}: 2 of 20 rows rejected (10.0%, above the 5.0% limit): missing_region 1, "
        "negative_price 1, zero_quantity 1; nothing loaded. See `salesflow validate` for the "
        "rows, or load anyway with --accept-rejects"
    )
    warehouse = DuckDBWarehouse(refused.warehouse)
    assert warehouse.fetch(
        "SELECT count(*) FROM sales UNION ALL SELECT count(*) FROM sales_rejected"
    ) == [(0,), (0,)]

    accepted = run_etl([dirty], settings, RunOptions(accept_rejects=True))

    assert [(o.status, o.rows_loaded, o.rows_rejected) for o in accepted.outcomes] == [
        (BatchStatus.LOADED, 18, 2)
    ]


def test_rerunning_a_fixed_batch_after_a_failure_leaves_no_trace_of_the_failure(
    tmp_path: Path, settings: Settings
) -> None:
    source = tmp_path / "in" / "day.csv"
    write_csv(source, CANONICAL_HEADER, *GOOD_ROWS[:5], "O90,2024-02-01,C1,S1,P,Home,0,2,North")
    assert run_etl([source], settings).outcomes[0].status == BatchStatus.FAILED
    write_csv(source, CANONICAL_HEADER, *GOOD_ROWS)

    after_failure = run_etl([source], settings)
    clean = run_etl([source], settings, RunOptions(warehouse=str(tmp_path / "clean.duckdb")))

    assert after_failure.outcomes[0].status == BatchStatus.LOADED
    assert tables(after_failure) == tables(clean)
    assert DuckDBWarehouse(after_failure.warehouse).fetch(
        "SELECT status, error, rows_loaded FROM batches"
    ) == [("loaded", None, 18)]


def test_a_row_another_batch_already_loaded_is_quarantined_in_the_later_file(
    tmp_path: Path, settings: Settings
) -> None:
    shared = "O1,2024-02-01T10:00:00,C1,S1,P,Home,1,2.50,North"
    first = write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, shared, *GOOD_ROWS[1:])
    write_csv(
        tmp_path / "in" / "b.csv", CANONICAL_HEADER, "O50,2024-02-01,C5,S5,P,Home,5,1,South", shared
    )

    summary = run_etl([tmp_path / "in"], settings, RunOptions(accept_rejects=True))
    again = run_etl([tmp_path / "in"], settings, RunOptions(force=True, accept_rejects=True))

    warehouse = DuckDBWarehouse(summary.warehouse)
    assert warehouse.fetch("SELECT batch_id, source_row, reasons, raw FROM sales_rejected") == [
        (
            "in/b.csv",
            2,
            ["duplicate_in_warehouse"],
            json.dumps(
                dict(zip(CANONICAL_HEADER.split(","), shared.split(","), strict=True)),
                separators=(",", ":"),
            ),
        )
    ]
    assert warehouse.fetch("SELECT batch_id FROM sales WHERE order_id = 'O1'") == [("in/a.csv",)]
    assert tables(again) == tables(summary)
    assert first.exists()


def test_cross_batch_duplicates_can_be_allowed(tmp_path: Path, settings: Settings) -> None:
    shared = "O1,2024-02-01T10:00:00,C1,S1,P,Home,1,2.50,North"
    own = "O2,2024-02-01T11:00:00,C2,S2,P,Home,1,4.00,North"
    write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, shared)
    # Other bytes (a byte-identical file is the same content, skipped whatever this setting).
    write_csv(tmp_path / "in" / "b.csv", CANONICAL_HEADER, shared, own)
    lenient = settings.model_copy(update={"reject_duplicates_in_warehouse": False})

    summary = run_etl([tmp_path / "in"], lenient)

    assert [(o.rows_loaded, o.rows_rejected) for o in summary.outcomes] == [(1, 0), (2, 0)]


def test_a_run_publishes_its_quality_report_and_batches_table(
    tmp_path: Path, settings: Settings
) -> None:
    write_csv(
        tmp_path / "in" / "a.csv",
        CANONICAL_HEADER,
        *GOOD_ROWS,
        "O90,2024-02-01,C1,S1,P,Home,0,2,North",
    )
    write_csv(tmp_path / "in" / "b.csv", "when,what", "2024-01-01,thing")

    summary = run_etl([tmp_path / "in"], settings, RunOptions(accept_rejects=True))

    quality = read_artifact(summary.flow_run_id, QUALITY_KEY)
    assert quality.type == "markdown"
    assert "| `zero_quantity` | 1 |" in quality.data
    assert "| in/a.csv | 19 | 1 | 5.26% | 1 |" in quality.data
    assert "**in/b.csv**: " in quality.data and "missing required columns" in quality.data
    assert '"quantity":"0"' in quality.data
    batches = read_artifact(summary.flow_run_id, BATCHES_KEY)
    rows = json.loads(batches.data) if isinstance(batches.data, str) else batches.data
    assert [(row["batch"], row["status"], row["reconciled"]) for row in rows] == [
        ("in/a.csv", "loaded", "yes"),
        ("in/b.csv", "failed", "n/a"),
    ]


def read_artifact(flow_run_id: str | None, key: str) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return artifact
