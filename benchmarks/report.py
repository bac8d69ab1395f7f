"""Summarise repeated measurements: medians, rows/s, ratios to the floor; write JSON and Markdown.

Medians, not means: on a shared machine one slow repetition should not move the result.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.contenders import DESCRIPTIONS, FLOOR
from benchmarks.measure import Measurement
from benchmarks.overhead import Overhead, overhead_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Summary:
    """The median of one contender's repetitions and its ratios to the floor's median."""

    contender: str
    runs: int
    failed_runs: int
    wall_seconds: float
    rows_per_second: float
    peak_rss_mib: float
    wall_vs_floor: float | None
    rss_vs_floor: float | None


def summarise(measured: dict[str, list[Measurement]], rows: int) -> list[Summary]:
    """One Summary per contender, in the order they were measured."""
    medians = {}
    for name, runs in measured.items():
        # A failed run's time says nothing about the contender: use the good ones when any.
        good = [run for run in runs if run.returncode == 0] or runs
        if good:
            medians[name] = (
                statistics.median(run.wall_seconds for run in good),
                statistics.median(run.peak_rss_bytes for run in good) / MIB,
            )
    floor_wall, floor_rss = medians.get(FLOOR, (0.0, 0.0))
    summaries = []
    for name, (wall, rss) in medians.items():
        summaries.append(
            Summary(
                contender=name,
                runs=len(measured[name]),
                failed_runs=sum(run.returncode != 0 for run in measured[name]),
                wall_seconds=wall,
                rows_per_second=rows / wall if wall else 0.0,
                peak_rss_mib=rss,
                wall_vs_floor=wall / floor_wall if floor_wall else None,
                rss_vs_floor=rss / floor_rss if floor_rss else None,
            )
        )
    return summaries


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def markdown_table(summaries: list[Summary]) -> str:
    """The results as a Markdown table, the form the README quotes."""
    lines = [
        "| contender | wall (s) | rows/s | peak RSS (MiB) | wall vs floor | RSS vs floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for one in summaries:
        failed = f" ({one.failed_runs} failed)" if one.failed_runs else ""
        lines.append(
            f"| {one.contender}{failed} | {one.wall_seconds:.2f} | {one.rows_per_second:,.0f} "
            f"| {one.peak_rss_mib:,.0f} | {_ratio(one.wall_vs_floor)} "
            f"| {_ratio(one.rss_vs_floor)} |"
        )
    return "\n".join(lines)


def profile_table(stage_seconds: dict[str, float], flow_wall: float | None) -> str:
    """Seconds per stage, their sum, and the flow's wall time minus that sum (orchestration)."""
    total = sum(stage_seconds.values())
    lines = ["| stage | seconds | share of flow wall |", "|---|---:|---:|"]
    for name, seconds in [*stage_seconds.items(), ("all stages", total)]:
        share = f"{seconds / flow_wall:.0%}" if flow_wall else "-"
        lines.append(f"| {name} | {seconds:.2f} | {share} |")
    if flow_wall:
        overhead = flow_wall - total
        lines.append(
            f"| Prefect and process overhead (flow wall - stages) | {overhead:.2f} "
            f"| {overhead / flow_wall:.0%} |"
        )
    return "\n".join(lines)


def write_results(
    config: dict[str, Any],
    measured: dict[str, list[Measurement]],
    summaries: list[Summary],
    stage_seconds: dict[str, float] | None,
    flow_wall: float | None,
    started: datetime,
    overheads: dict[str, Overhead] | None = None,
) -> tuple[Path, Path]:
    """benchmarks/results/<timestamp>.json (everything) and .md (the tables); return both."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / started.strftime("%Y%m%dT%H%M%SZ")
    document = {
        "started": started.isoformat(),
        "config": config,
        "summary": [asdict(one) for one in summaries],
        "runs": {name: [asdict(run) for run in runs] for name, runs in measured.items()},
        "stage_seconds": stage_seconds,
        "flow_wall_seconds": flow_wall,
        "prefect_overhead": {api: one.as_dict() for api, one in (overheads or {}).items()},
    }
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    rows = config["rows"]
    sections = [
        f"# salesflow benchmark, {rows:,} rows over {config['files']} files, "
        f"{started:%Y-%m-%d %H:%M} UTC",
        f"Median of {config['repeat']} alternating repetition(s); "
        f"{config['cpus']} CPUs, {config['platform']}.",
        markdown_table(summaries),
        "\n".join(f"- **{name}**: {DESCRIPTIONS[name]}" for name in measured),
    ]
    if stage_seconds is not None:
        sections += ["## Where salesflow's time goes", profile_table(stage_seconds, flow_wall)]
    if overheads:
        sections += ["## Prefect's cost per batch", overhead_table(overheads)]
    markdown_path = stem.with_suffix(".md")
    markdown_path.write_text("\n\n".join(sections) + "\n")
    return json_path, markdown_path
