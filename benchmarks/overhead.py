"""Prefect's cost per batch, measured apart from the data work and the start-up.

`salesflow run` over 1 tiny file and over 1 + N tiny files (TINY_ROWS rows each): the difference
in wall time is what N more batches cost. Their stage functions, timed in-process over the same
files, are the data work in it; the rest is orchestration (task runs, states, results, logs)
per batch. Tiny files make the data work small, so the figure is Prefect's, not DuckDB's; the
KPI check is switched off, since its cost grows with the days loaded, not with the batches, and
the run takes one batch at a time (`max_workers = 1`), as the profile does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import contenders
from benchmarks.data import daily_files
from benchmarks.measure import Measurement, measure

TINY_ROWS = 20
EXTRA_BATCHES = 60


@dataclass(frozen=True)
class Overhead:
    """What N extra batches cost a run, in seconds, and the share that is not data work."""

    extra_batches: int
    run_wall_one: float
    run_wall_many: float
    stages_one: float
    stages_many: float

    @property
    def per_batch_seconds(self) -> float:
        extra_wall = self.run_wall_many - self.run_wall_one
        extra_stages = self.stages_many - self.stages_one
        return (extra_wall - extra_stages) / self.extra_batches

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"per_batch_seconds": self.per_batch_seconds}


def measure_overhead(
    work_dir: Path, api_env: dict[str, str] | None, extra_batches: int = EXTRA_BATCHES
) -> Overhead | None:
    """Measure on Prefect's ephemeral API, or on the server `api_env` points at; None (the
    reason printed) if a run fails."""
    sources = daily_files(TINY_ROWS * (extra_batches + 1), extra_batches + 1)
    walls: dict[int, float] = {}
    stage_sums: dict[int, float] = {}
    for count in (1, extra_batches + 1):
        folder = work_dir / f"{count}-files"
        invocation = contenders.salesflow_run(folder, sources[:count], api_env)
        # One batch at a time, as the stage profile runs them: with two side by side, the
        # profile's serial sum exceeds the wall time they add and the difference goes negative.
        env = invocation.env | {"SALESFLOW_ANOMALY_CHECKS": "false", "SALESFLOW_MAX_WORKERS": "1"}
        run = _checked(measure(invocation.command, env, folder / "run.log"), folder / "run.log")
        profile_log = folder / "profile.log"
        profiler = contenders.stage_profile(folder / "profile", sources[:count])
        profile = _checked(measure(profiler.command, profiler.env, profile_log), profile_log)
        if run is None or profile is None:
            return None
        walls[count] = run.wall_seconds
        stage_sums[count] = sum(json.loads(profile_log.read_text().splitlines()[-1]).values())
    many = extra_batches + 1
    return Overhead(extra_batches, walls[1], walls[many], stage_sums[1], stage_sums[many])


def _checked(result: Measurement, log: Path) -> Measurement | None:
    if result.returncode != 0:
        print(f"overhead run failed ({result.returncode}), see {log}")
        return None
    return result


def overhead_table(overheads: dict[str, Overhead]) -> str:
    """One row per API: the runs' wall times, the data work in them, the cost per batch."""
    lines = [
        "| API | 1 batch (s) | 1 + N batches (s) | stage functions, N batches (s) | "
        "Prefect per batch (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for api, one in overheads.items():
        lines.append(
            f"| {api} | {one.run_wall_one:.2f} | {one.run_wall_many:.2f} "
            f"(N = {one.extra_batches}) | {one.stages_many - one.stages_one:.2f} | "
            f"{one.per_batch_seconds * 1000:.0f} |"
        )
    return "\n".join(lines)
