"""Backfill end to end in real processes: killed part-way, the same command finishes the job and
the warehouse ends identical to an uninterrupted backfill."""

from __future__ import annotations

import os
import signal
import time
from datetime import date
from pathlib import Path

import pytest

from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import fresh_process_env, run_salesflow, start_salesflow

pytestmark = pytest.mark.e2e

DAYS = 8


def backfill_args(landing: Path, warehouse: Path) -> list[str]:
    return [
        "backfill",
        "--start",
        "2024-04-01",
        "--end",
        f"2024-04-{DAYS:02d}",
        "--landing",
        str(landing),
        "--warehouse",
        str(warehouse),
        "--max-days-in-flight",
        "1",
    ]


def loaded_batches(warehouse: Path) -> int:
    if not warehouse.exists():
        return 0
    try:
        rows = DuckDBWarehouse(warehouse).fetch(
            "SELECT count(*) FROM batches WHERE status = 'loaded'"
        )
    except Exception:
        return 0
    return int(rows[0][0])


def checksums(warehouse: Path) -> dict[str, str]:
    store = DuckDBWarehouse(warehouse)
    return {
        table: store.table_checksum(table) for table in ("sales", "sales_rejected", "daily_sales")
    }


def test_a_killed_backfill_resumes_and_ends_identical_to_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    landing = tmp_path / "landing"
    generate_sales(landing, date(2024, 4, 1), DAYS, 400, seed=11, dirty_ratio=0.01)
    env = fresh_process_env(tmp_path / "prefect-home")
    interrupted = tmp_path / "interrupted.duckdb"

    process = start_salesflow(tmp_path, env, *backfill_args(landing, interrupted))
    deadline = time.monotonic() + 240
    while loaded_batches(interrupted) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)  # the run and its ephemeral Prefect server
    process.wait(timeout=30)
    done_before_resume = loaded_batches(interrupted)
    assert 2 <= done_before_resume < DAYS

    resumed = run_salesflow(tmp_path, env, *backfill_args(landing, interrupted))
    clean = run_salesflow(tmp_path, env, *backfill_args(landing, tmp_path / "clean.duckdb"))

    assert resumed.returncode == 0, resumed.stderr
    assert clean.returncode == 0, clean.stderr
    assert resumed.stdout.count("│ skip") >= done_before_resume
    assert loaded_batches(interrupted) == DAYS
    assert checksums(interrupted) == checksums(tmp_path / "clean.duckdb")
    assert DuckDBWarehouse(interrupted).fetch(
        "SELECT count(*) FROM batches WHERE status NOT IN ('loaded', 'skipped')"
    ) == [(0,)]
