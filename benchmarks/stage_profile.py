"""Where salesflow's time goes: the stage functions of salesflow.stages timed in-process.

The same plan, stage, validate (which transforms too) and load the flow runs, without Prefect,
one file after another into a fresh warehouse. The flow's wall time minus their sum is what
orchestration (Prefect, the ephemeral API, process start) costs. Run as a child process:
`python -m benchmarks.stage_profile WORK_DIR FILE...`; prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from salesflow import stages
from salesflow.config import Settings
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse

STAGES = ("plan", "stage", "validate", "load")  # validate also transforms, in one SQL pass


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the `with` block to seconds[name]."""
    started = time.perf_counter()
    yield
    seconds[name] += time.perf_counter() - started


def profile_stages(work_dir: Path, sources: list[Path]) -> dict[str, float]:
    """Seconds spent in each stage over all `sources`, loaded one by one as the flow does."""
    settings = Settings(data_dir=work_dir)
    rules = ValidationRules.from_settings(settings)
    bands = TicketBands.from_settings(settings)
    warehouse = DuckDBWarehouse(work_dir / "warehouse.duckdb")
    warehouse.ensure_schema()
    staging = work_dir / "staging"
    seconds = dict.fromkeys(STAGES, 0.0)
    # Read once, as the flow's read-fingerprints task does: a fresh warehouse holds none of
    # the files, so every plan hashes its file and none is skipped either way.
    loaded = warehouse.source_index()
    for source in sources:
        with timed(seconds, "plan"):
            manifest = stages.plan(source, source.name, loaded, profile=None)
        with timed(seconds, "stage"):
            manifest = stages.stage(manifest, staging)
        with timed(seconds, "validate"):
            manifest = stages.validate(manifest, rules, bands)
        with timed(seconds, "load"):
            stages.load(manifest, warehouse, None)
    return seconds


if __name__ == "__main__":
    result = profile_stages(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
    print(json.dumps(result))
