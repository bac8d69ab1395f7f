"""Real processes against one embedded warehouse: overlapping runs take turns, and a run killed
with SIGKILL at any moment leaves a warehouse that a re-run brings to the clean result."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse
from tests.conftest import fresh_process_env, run_salesflow, start_salesflow

pytestmark = pytest.mark.e2e

TABLES = ("sales", "sales_rejected", "daily_sales")


def run_args(landing: Path, warehouse: Path) -> list[str]:
    return ["run", str(landing), "--warehouse", str(warehouse)]


def checksums(warehouse: Path) -> dict[str, str]:
    store = DuckDBWarehouse(warehouse)
    return {table: store.table_checksum(table) for table in TABLES}


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    generate_sales(folder, date(2024, 5, 1), 30, 300, seed=5, dirty_ratio=0.01)
    return folder


@pytest.fixture(scope="module")
def clean_result(landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("clean")
    result = run_salesflow(
        root, fresh_process_env(root / "home"), *run_args(landing, root / "clean.duckdb")
    )
    assert result.returncode == 0, result.stderr
    return checksums(root / "clean.duckdb")


def test_eight_overlapping_runs_load_every_batch_exactly_once(
    landing: Path, clean_result: dict[str, str], tmp_path: Path
) -> None:
    warehouse = tmp_path / "shared.duckdb"
    env = fresh_process_env(tmp_path / "home")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "salesflow.cli", *run_args(landing, warehouse)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [process.communicate(timeout=900) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "database is locked" not in out + err
    loaded = sum(int(out.split(" loaded,")[0].split()[-1]) for out, _ in outputs)
    assert loaded == 30
    assert checksums(warehouse) == clean_result
    assert DuckDBWarehouse(warehouse).fetch(
        "SELECT count(*), count(DISTINCT batch_id) FROM batches"
    ) == [(30, 30)]


@pytest.mark.parametrize("trial", range(3))
def test_a_run_killed_at_a_random_moment_is_repaired_by_a_rerun(
    trial: int, landing: Path, clean_result: dict[str, str], tmp_path: Path
) -> None:
    warehouse = tmp_path / "killed.duckdb"
    env = fresh_process_env(tmp_path / "home")
    process = start_salesflow(tmp_path, env, *run_args(landing, warehouse))
    deadline = time.monotonic() + 300
    while not (tmp_path / "data" / "staging").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(random.Random(trial).uniform(0.0, 4.0))  # somewhere among the loads
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    rerun = run_salesflow(tmp_path, env, *run_args(landing, warehouse))

    assert rerun.returncode == 0, rerun.stderr
    assert checksums(warehouse) == clean_result
    assert DuckDBWarehouse(warehouse).fetch(
        "SELECT count(*) FROM batches WHERE status NOT IN ('loaded', 'skipped')"
    ) == [(0,)]
