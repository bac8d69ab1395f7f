"""The benchmark command: `python -m benchmarks.run [--rows N] [--files N] [--repeat N] ...`.

It generates (or reuses) the input, runs every contender (the floor, salesflow, the pandas seed,
dlt) as a child process, alternating them each repetition so a busy moment on the machine hits
all of them alike, then profiles salesflow's stages and writes benchmarks/results/<timestamp>.json
and .md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import contenders
from benchmarks.data import BENCHMARKS_DIR, daily_files
from benchmarks.measure import Measurement, measure
from benchmarks.overhead import Overhead, measure_overhead, overhead_table
from benchmarks.report import markdown_table, profile_table, summarise, write_results
from salesflow.server import PrefectServer

HUGE_ROWS = 100_000_000
# 100M rows as 300 daily files keeps each file the size of the 10M run's (333k rows), so the
# ratio of the two times measures how the run scales with the input, not with one file's size.
HUGE_FILES = 300
DEFAULT_FILES = 30
WORK_ROOT = BENCHMARKS_DIR / ".work"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _measure_into(
    measured: dict[str, list[Measurement]],
    name: str,
    invocation: contenders.Invocation,
    log: Path,
) -> None:
    """Measure one contender once, print a line about it, keep the measurement."""
    result = measure(invocation.command, invocation.env, log)
    status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode}), see {log}"
    typer.echo(
        f"  {name:<46} {result.wall_seconds:8.2f} s  "
        f"{result.peak_rss_bytes / 2**20:8.0f} MiB  {status}"
    )
    measured.setdefault(name, []).append(result)


def _repetition(
    measured: dict[str, list[Measurement]],
    sources: list[Path],
    work_dir: Path,
    server_env: dict[str, str] | None,
    with_pandas: bool,
    with_dlt: bool,
    reverse: bool,
) -> None:
    """Every contender once, in a fresh work folder each; the re-runs follow their run."""

    def salesflow_pair(name: str, rerun: str, api_env: dict[str, str] | None) -> None:
        folder = work_dir / name.split(" (")[-1].rstrip(")").replace(" ", "-")
        invocation = contenders.salesflow_run(folder, sources, api_env)
        _measure_into(measured, name, invocation, folder / "first.log")
        _measure_into(measured, rerun, invocation, folder / "rerun.log")

    steps: list[Callable[[], None]] = [
        lambda: _measure_into(
            measured,
            contenders.FLOOR,
            contenders.floor(work_dir, sources),
            work_dir / "floor.log",
        ),
        lambda: salesflow_pair(contenders.SALESFLOW, contenders.SALESFLOW_RERUN, None),
    ]
    if server_env is not None:
        steps.append(
            lambda: salesflow_pair(
                contenders.SALESFLOW_SERVER, contenders.SALESFLOW_SERVER_RERUN, server_env
            )
        )
    if with_pandas:
        steps.append(
            lambda: _measure_into(
                measured,
                contenders.PANDAS,
                contenders.pandas_seed(work_dir, sources),
                work_dir / "pandas.log",
            )
        )
    if with_dlt:
        # The re-run repeats the append (not the merge) on its pipeline: a file the cursor failed
        # to skip would show as duplicate rows there, where a merge would hide it.
        def dlt_append_pair() -> None:
            folder = work_dir / "dlt-append"
            invocation = contenders.dlt_load(folder, sources, "append")
            _measure_into(measured, contenders.DLT_APPEND, invocation, folder / "first.log")
            _measure_into(measured, contenders.DLT_RERUN, invocation, folder / "rerun.log")

        steps.append(dlt_append_pair)
        steps.append(
            lambda: _measure_into(
                measured,
                contenders.DLT_MERGE,
                contenders.dlt_load(work_dir / "dlt-merge", sources, "merge"),
                work_dir / "dlt-merge" / "merge.log",
            )
        )
    for step in reversed(steps) if reverse else steps:
        step()


def _profile(sources: list[Path], work_dir: Path) -> dict[str, float] | None:
    """salesflow's stage functions timed in a child process; None (with a message) on failure."""
    invocation = contenders.stage_profile(work_dir, sources)
    log = work_dir / "profile.log"
    result = measure(invocation.command, invocation.env, log)
    if result.returncode != 0:
        typer.echo(f"stage profile failed ({result.returncode}), see {log}")
        return None
    seconds: dict[str, float] = json.loads(log.read_text().strip().splitlines()[-1])
    return seconds


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="Rows in total, over all files.", min=1)] = 1_000_000,
    files: Annotated[
        int | None,
        typer.Option(
            help=f"Number of daily files (default {DEFAULT_FILES}; {HUGE_FILES} with --huge).",
            min=1,
            show_default=False,
        ),
    ] = None,
    huge: Annotated[
        bool, typer.Option("--huge", help=f"{HUGE_ROWS:,} rows (over {HUGE_FILES} files).")
    ] = False,
    repeat: Annotated[
        int, typer.Option(help="Alternating repetitions; the median is reported.", min=1)
    ] = 1,
    prefect_server: Annotated[
        bool,
        typer.Option(
            "--prefect-server",
            help="Also run salesflow against a Prefect server started for the benchmark.",
        ),
    ] = False,
    pandas: Annotated[
        bool, typer.Option("--pandas/--no-pandas", help="Include the pandas baseline.")
    ] = True,
    dlt: Annotated[
        bool,
        typer.Option("--dlt/--no-dlt", help="Include dlt (append, merge, unchanged re-run)."),
    ] = True,
    profile: Annotated[
        bool, typer.Option("--profile/--no-profile", help="Time salesflow's stages in-process.")
    ] = True,
    overhead: Annotated[
        bool,
        typer.Option(
            "--overhead/--no-overhead",
            help="Measure Prefect's cost per batch on tiny files (about a minute per API).",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the work folders (warehouses, logs).")
    ] = False,
) -> None:
    """Benchmark `salesflow run` against a DuckDB SQL floor, a pandas baseline and dlt."""
    rows = HUGE_ROWS if huge else rows
    files = files or (HUGE_FILES if huge else DEFAULT_FILES)
    started = datetime.now(UTC)
    sources = daily_files(rows, files, seed)
    rows = rows // files * files
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    run_root = Path(tempfile.mkdtemp(prefix=started.strftime("%Y%m%dT%H%M%S-"), dir=WORK_ROOT))
    server = PrefectServer(run_root / "prefect-server") if prefect_server else None
    measured: dict[str, list[Measurement]] = {}
    stage_seconds: dict[str, float] | None = None
    overheads: dict[str, Overhead] = {}
    try:
        if server is not None:
            typer.echo(f"starting a Prefect server on {server.api_url}")
            server.start()
        for number in range(repeat):
            typer.echo(f"repetition {number + 1}/{repeat}, {rows:,} rows over {files} files")
            _repetition(
                measured,
                sources,
                run_root / f"repetition-{number + 1}",
                server.env if server is not None else None,
                pandas,
                dlt,
                reverse=number % 2 == 1,
            )
        if overhead:
            apis = {"ephemeral API": None} | (
                {"Prefect server": server.env} if server is not None else {}
            )
            for api, api_env in apis.items():
                typer.echo(f"measuring Prefect's cost per batch ({api})")
                measured_overhead = measure_overhead(
                    run_root / "overhead" / api.replace(" ", "-"), api_env
                )
                if measured_overhead is not None:
                    overheads[api] = measured_overhead
        if profile:
            typer.echo("profiling salesflow's stages in-process")
            stage_seconds = _profile(sources, run_root / "profile")
    finally:
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(run_root, ignore_errors=True)
    summaries = summarise(measured, rows)
    flow_runs = measured.get(contenders.SALESFLOW, [])
    flow_wall = statistics.median(run.wall_seconds for run in flow_runs) if flow_runs else None
    config = {
        "rows": rows,
        "files": files,
        "repeat": repeat,
        "seed": seed,
        "prefect_server": prefect_server,
        "cpus": os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }
    json_path, markdown_path = write_results(
        config, measured, summaries, stage_seconds, flow_wall, started, overheads
    )
    typer.echo("\n" + markdown_table(summaries))
    if stage_seconds is not None:
        typer.echo("\n" + profile_table(stage_seconds, flow_wall))
    if overheads:
        typer.echo("\n" + overhead_table(overheads))
    typer.echo(f"\nwrote {json_path} and {markdown_path}")


if __name__ == "__main__":
    app()
