"""Run one contender as a child process and measure its wall time and its tree's peak RSS.

The peak is the largest sum of resident memory over the child and everything it spawned (the
ephemeral Prefect API is one such process), sampled every POLL_SECONDS with psutil: the kernel's
RUSAGE_CHILDREN only keeps the largest single process, which would miss the tree.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Measurement:
    """One timed run of one contender."""

    wall_seconds: float
    peak_rss_bytes: int
    returncode: int
    output_tail: str


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants; vanished processes count as zero."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def measure(command: list[str], env: dict[str, str], log: Path) -> Measurement:
    """Run `command` to completion, its output going to `log`; time it and track peak tree RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        watched = psutil.Process(child.pid)
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(POLL_SECONDS)
        wall = time.perf_counter() - started
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
    return Measurement(wall, peak, child.returncode, tail)
