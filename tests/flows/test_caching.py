"""Stage results are cached by content, contract and code version: a re-run reuses the finished
work of a batch, recomputes when asked or when its staged files are gone, and never trusts the
cache about what is loaded."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.run_summary import RunSummary
from tests.conftest import CANONICAL_HEADER, fresh_process_env, write_csv
from tests.flows.test_etl import read_task_runs, stage_name

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

ROWS = [f"O{n},2024-02-01T10:00:00,C{n},S{n},P,Home,{n},2.50,North" for n in range(1, 10)]
CACHED_STAGES = ("extract-validate",)  # one task: extract, validate and transform
# Validation depends on the time future_date is judged against: fixed, so runs can share a cache.
AS_OF = datetime(2024, 6, 1, 12, tzinfo=UTC)


def stage_states(summary: RunSummary) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for run in read_task_runs(summary.flow_run_id):
        states.setdefault(stage_name(run), []).append(run.state.name if run.state else "")
    return {stage: sorted(names) for stage, names in states.items()}


@pytest.fixture
def too_dirty(tmp_path: Path) -> Path:
    # 1 of 10 rows rejected: above the 5% limit, so the batch fails at load unless accepted.
    return write_csv(
        tmp_path / "in" / "day.csv", CANONICAL_HEADER, *ROWS, "O99,2024-02-01,C1,S1,P,Home,0,1,N"
    )


def test_a_failed_batch_reruns_from_its_cached_stage_results(
    too_dirty: Path, settings: Settings
) -> None:
    failed = run_etl([too_dirty], settings, RunOptions(as_of=AS_OF))
    assert failed.outcomes[0].status == BatchStatus.FAILED

    accepted = run_etl([too_dirty], settings, RunOptions(accept_rejects=True, as_of=AS_OF))

    assert accepted.outcomes[0].status == BatchStatus.LOADED
    assert (accepted.outcomes[0].rows_loaded, accepted.outcomes[0].rows_rejected) == (9, 1)
    states = stage_states(accepted)
    for stage in CACHED_STAGES:
        assert states[stage] == ["Cached"], stage
    assert states["plan"] == ["Completed"]


def test_refresh_cache_recomputes_every_stage(too_dirty: Path, settings: Settings) -> None:
    run_etl([too_dirty], settings, RunOptions(as_of=AS_OF))

    refreshed = run_etl(
        [too_dirty], settings, RunOptions(accept_rejects=True, refresh_cache=True, as_of=AS_OF)
    )

    states = stage_states(refreshed)
    for stage in CACHED_STAGES:
        assert states[stage] == ["Completed"], stage


def test_a_changed_rule_is_not_served_from_the_cache(too_dirty: Path, settings: Settings) -> None:
    run_etl([too_dirty], settings, RunOptions(as_of=AS_OF))
    stricter = settings.model_copy(update={"max_quantity": 5})

    rerun = run_etl([too_dirty], stricter, RunOptions(accept_rejects=True, as_of=AS_OF))

    states = stage_states(rerun)
    assert states["extract-validate"] == ["Completed"]
    assert rerun.outcomes[0].reason_counts == {"quantity_out_of_range": 4, "zero_quantity": 1}


def test_cached_results_whose_staged_files_are_gone_are_redone(
    too_dirty: Path, settings: Settings
) -> None:
    run_etl([too_dirty], settings, RunOptions(as_of=AS_OF))
    shutil.rmtree(settings.staging_path)

    rerun = run_etl([too_dirty], settings, RunOptions(accept_rejects=True, as_of=AS_OF))

    assert rerun.outcomes[0].status == BatchStatus.LOADED
    assert rerun.outcomes[0].rows_loaded == 9
    states = stage_states(rerun)
    assert states["extract-validate"] == ["Cached", "Completed"]  # stale, then redone fresh


def test_a_fresh_prefect_database_causes_no_reload(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in" / "day.csv", CANONICAL_HEADER, *ROWS)
    command = [sys.executable, "-m", "salesflow.cli", "run", str(source)]

    outputs = []
    for home in ("prefect-one", "prefect-two"):  # the second run knows nothing of the first
        env = fresh_process_env(tmp_path / home)
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)

    assert "1 loaded, 0 unchanged" in outputs[0]
    assert "0 loaded, 1 unchanged" in outputs[1]
