"""The contenders: each is a command line run as its own child process on the same files.

Every contender gets a fresh work folder (warehouse, staging, results), so none profits from
another's files; only salesflow's re-run reuses the warehouse its first run just filled.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import salesflow_command

FLOOR = "floor (DuckDB SQL)"
SALESFLOW = "salesflow run (ephemeral API)"
SALESFLOW_RERUN = "salesflow re-run, unchanged (ephemeral API)"
SALESFLOW_SERVER = "salesflow run (Prefect server)"
SALESFLOW_SERVER_RERUN = "salesflow re-run, unchanged (Prefect server)"
PANDAS = "pandas seed"
DLT_APPEND = "dlt append"
DLT_MERGE = "dlt merge"
DLT_RERUN = "dlt re-run, unchanged"

DESCRIPTIONS = {
    FLOOR: "one DuckDB script: read_csv, total, ticket size, month, weekday, sales + daily mart",
    SALESFLOW: "`salesflow run` end to end on Prefect's ephemeral API, fresh warehouse",
    SALESFLOW_RERUN: "the same command again on the same warehouse: every batch skipped",
    SALESFLOW_SERVER: "`salesflow run` against a running `prefect server start`, fresh warehouse",
    SALESFLOW_SERVER_RERUN: "the server run again on the same warehouse: every batch skipped",
    PANDAS: "pandas.read_csv per file, row-wise apply for ticket size, DuckDB insert + mart",
    DLT_APPEND: "dlt filesystem source (incremental on modification_date), pyarrow.csv per file"
    " plus the floor's columns in pyarrow.compute, Arrow -> Parquet -> DuckDB,"
    " write_disposition=append into a fresh DuckDB file, then the mart; no validation",
    DLT_MERGE: "the same with write_disposition=merge, primary_key=(order_id, sku)"
    " (delete-insert through a staging dataset), fresh DuckDB file; no validation",
    DLT_RERUN: "dlt append again on the same pipeline state and warehouse: the incremental"
    " cursor skips every file, none is read",
}


@dataclass(frozen=True)
class Invocation:
    """A command line and its environment, ready for benchmarks.measure.measure."""

    command: list[str]
    env: dict[str, str]


def _python_module(module: str, warehouse: Path, sources: list[Path]) -> list[str]:
    return [sys.executable, "-m", module, str(warehouse), *(str(path) for path in sources)]


def _base_env() -> dict[str, str]:
    """The caller's environment minus any Prefect API URL: contenders choose their own API."""
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    # Run from the repository root so `python -m benchmarks.floor` resolves.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")])
    )
    return env


def floor(work_dir: Path, sources: list[Path]) -> Invocation:
    return Invocation(
        _python_module("benchmarks.floor", work_dir / "floor.duckdb", sources), _base_env()
    )


def pandas_seed(work_dir: Path, sources: list[Path]) -> Invocation:
    return Invocation(
        _python_module("benchmarks.pandas_seed", work_dir / "pandas.duckdb", sources), _base_env()
    )


def dlt_load(work_dir: Path, sources: list[Path], mode: str) -> Invocation:
    """benchmarks.dlt_load in `mode` with its warehouse, pipeline state and dlt's data dir
    inside `work_dir` (nothing in ~/.dlt) and dlt's telemetry off."""
    env = _base_env() | {
        "DLT_DATA_DIR": str(work_dir / "dlt-data"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    command = [
        sys.executable,
        "-m",
        "benchmarks.dlt_load",
        mode,
        str(work_dir / f"dlt-{mode}.duckdb"),
        *(str(path) for path in sources),
    ]
    return Invocation(command, env)


def salesflow_run(
    work_dir: Path, sources: list[Path], api_env: dict[str, str] | None = None
) -> Invocation:
    """`salesflow run` with its data_dir (staging, results) and warehouse inside `work_dir`.

    `api_env` points it at a running server; without it Prefect starts its ephemeral API.
    """
    env = _base_env() | {"SALESFLOW_DATA_DIR": str(work_dir)} | (api_env or {})
    command = [
        *salesflow_command(),
        "run",
        *(str(path) for path in sources),
        "--warehouse",
        str(work_dir / "warehouse.duckdb"),
    ]
    return Invocation(command, env)


def stage_profile(work_dir: Path, sources: list[Path]) -> Invocation:
    return Invocation(
        [sys.executable, "-m", "benchmarks.stage_profile", str(work_dir), *map(str, sources)],
        _base_env(),
    )
