"""Orchestration guarantees on a real Prefect API: retries of a flaky source, the Prefect
transaction around each load, the global concurrency limit, and batches split by region."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from salesflow import stages
from salesflow.config import Settings
from salesflow.errors import ReconciliationError
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.options import RunOptions
from salesflow.sources import files as source_files
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.flows.test_etl import checksums, read_task_runs, stage_name

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def task_states(flow_run_id: str | None, stage: str) -> list[list[str]]:
    """The state names each task run of one stage went through, oldest first."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [
            [state.name for state in sorted(client.read_task_run_states(run.id), key=_when)]
            for run in read_task_runs(flow_run_id)
            if stage_name(run) == stage
        ]


def _when(state: Any) -> Any:
    return state.timestamp


# --- retries -------------------------------------------------------------------------------


def test_a_flaky_source_fails_twice_then_loads_and_bad_input_is_not_retried(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = write_csv(tmp_path / "in" / "a_flaky.csv", CANONICAL_HEADER, *_rows(3))
    broken = write_csv(tmp_path / "in" / "b_broken.csv", "order_id,quantity", "1,2")
    real_stage_source = source_files.stage_source
    calls = {"flaky": 0}

    def stage_source_failing_twice(source: Path, target: Path) -> Any:
        if source.name == flaky.name and calls["flaky"] < 2:
            calls["flaky"] += 1
            raise ConnectionResetError(104, "Connection reset by peer (network share)")
        return real_stage_source(source, target)

    monkeypatch.setattr(stages, "stage_source", stage_source_failing_twice)

    summary = run_etl([flaky, broken], settings)

    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED, BatchStatus.FAILED]
    assert summary.outcomes[0].rows_loaded == 3
    assert "missing required column" in (summary.outcomes[1].error or "")
    histories = task_states(summary.flow_run_id, "extract-validate")
    retried = [h for h in histories if h.count("Retrying") == 2]
    once = [h for h in histories if "Retrying" not in h]
    assert len(retried) == 1 and retried[0][-1] == "Completed"
    assert retried[0].count("AwaitingRetry") == 2
    assert len(once) == 1 and once[0][-1] == "Failed"  # a missing column is not retried


def _rows(count: int, region: str = "North", day: str = "2024-03-01") -> list[str]:
    return [
        f"o{n},{day}T10:{n % 60:02d}:00,c{n},S{n},P,Cat,{n % 5 + 1},{n % 7 + 1}.50,{region}"
        for n in range(1, count + 1)
    ]


# --- the Prefect transaction around a load --------------------------------------------------


def _fail_read_back(outcome: BatchOutcome, warehouse: Any) -> None:
    """Stands in for stages.check_committed: every committed load reads back wrong."""
    if outcome.status == BatchStatus.LOADED:
        raise ReconciliationError(outcome.source, "read back after commit differs (injected)")


def test_a_failure_after_the_commit_rolls_back_to_the_previous_version(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "in"
    day = write_csv(landing / "day.csv", CANONICAL_HEADER, *_rows(4))
    other = write_csv(landing / "other.csv", CANONICAL_HEADER, *_rows(2, "South", "2024-03-02"))
    first = run_etl([landing], settings)
    warehouse = DuckDBWarehouse(first.warehouse)
    before = checksums(warehouse)
    loaded_sha = warehouse.loaded_sha256("in/day.csv")

    write_csv(day, CANONICAL_HEADER, *_rows(6, "East", "2024-03-03"))  # a corrected file
    monkeypatch.setattr(stages, "check_committed", _fail_read_back)
    failed = run_etl([day, other], settings)

    assert [o.status for o in failed.outcomes] == [BatchStatus.FAILED, BatchStatus.SKIPPED]
    assert "injected" in (failed.outcomes[0].error or "")
    assert checksums(warehouse) == before  # sales, rejects and the mart as before the run
    assert warehouse.fetch("SELECT status, sha256 FROM batches WHERE batch_id = 'in/day.csv'") == [
        ("failed", loaded_sha)
    ]
    assert not list((settings.staging_path).rglob("undo/*"))  # undo copies cleaned up

    monkeypatch.undo()
    fixed = run_etl([day], settings)
    assert fixed.outcomes[0].status == BatchStatus.LOADED
    assert warehouse.fetch(
        "SELECT count(*), min(region) FROM sales WHERE batch_id = 'in/day.csv'"
    ) == [(6, "East")]
    assert not list((settings.staging_path).rglob("undo"))


def test_rolling_back_a_first_load_leaves_no_trace_of_the_batch(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = write_csv(tmp_path / "in" / "day.csv", CANONICAL_HEADER, *_rows(4))
    monkeypatch.setattr(stages, "check_committed", _fail_read_back)

    summary = run_etl([day], settings)

    assert summary.outcomes[0].status == BatchStatus.FAILED
    warehouse = DuckDBWarehouse(summary.warehouse)
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(0,)]
    assert warehouse.fetch("SELECT count(*) FROM daily_sales") == [(0,)]
    assert warehouse.fetch("SELECT status FROM batches") == [("failed",)]


# --- the global concurrency limit ----------------------------------------------------------


def test_loads_wait_for_the_global_concurrency_limit(tmp_path: Path, settings: Settings) -> None:
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    from salesflow.flows.concurrency import ensure_limit

    limit = f"salesflow-test-{tmp_path.name}"
    ensure_limit(limit)
    landing = tmp_path / "in"
    write_csv(landing / "a.csv", CANONICAL_HEADER, *_rows(3))
    write_csv(landing / "b.csv", CANONICAL_HEADER, *_rows(3, "South", "2024-03-02"))
    holding = threading.Event()
    released: list[datetime] = []

    def another_writer() -> None:  # e.g. a flow run on another machine, loading now
        with concurrency(limit, occupy=1, strict=True):
            holding.set()
            time.sleep(4)
            released.append(datetime.now(UTC))

    writer = threading.Thread(target=another_writer)
    writer.start()
    assert holding.wait(60)
    limited = settings.model_copy(update={"warehouse_concurrency_limit": limit})
    summary = run_etl([landing], limited)
    writer.join()

    assert [o.status for o in summary.outcomes] == [BatchStatus.LOADED] * 2
    assert all(o.finished_at >= released[0] for o in summary.outcomes)
    with get_client(sync_client=True) as client:
        state = client.read_global_concurrency_limit_by_name(limit)
    assert (state.limit, state.active_slots) == (1, 0)  # created with one slot, all released


# --- a large batch split by region ---------------------------------------------------------


@pytest.fixture(scope="module")
def large_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("large")
    generate_sales(landing, date(2024, 6, 1), 1, 3000, seed=11, dirty_ratio=0.1, fmt="csv")
    return next(landing.iterdir())


def test_a_batch_split_by_region_loads_exactly_as_a_whole_one(
    large_day: Path, tmp_path: Path, settings: Settings
) -> None:
    whole = run_etl([large_day], settings, RunOptions(accept_rejects=True))
    split_settings = settings.model_copy(
        update={"split_rows": 1000, "data_dir": tmp_path / "split"}
    )
    split = run_etl([large_day], split_settings, RunOptions(accept_rejects=True))

    assert whole.outcomes[0].status == split.outcomes[0].status == BatchStatus.LOADED
    assert split.outcomes[0].rows_rejected > 0  # the dirty rows, duplicates included
    assert split.outcomes[0].reason_counts == whole.outcomes[0].reason_counts
    assert checksums(DuckDBWarehouse(split.warehouse)) == checksums(
        DuckDBWarehouse(whole.warehouse)
    )
    runs = read_task_runs(split.flow_run_id)
    regions = DuckDBWarehouse(split.warehouse).fetch("SELECT count(DISTINCT region) FROM sales")
    validates = [run for run in runs if stage_name(run) == "validate"]
    assert len(validates) >= regions[0][0] > 1  # one validate task per region part
    assert [stage_name(run) for run in runs].count("merge") == 1
    assert [stage_name(run) for run in runs].count("load") == 1
    assert [stage_name(run) for run in read_task_runs(whole.flow_run_id)].count("split") == 0
