"""Input for the benchmarks: `salesflow generate` output, cached per size under benchmarks/.data.

Generating 10M rows takes longer than loading them, so each (rows, files) pair is written once
and reused; a marker file written last means the folder is complete.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
DATA_ROOT = BENCHMARKS_DIR / ".data"
COMPLETE_MARKER = ".complete"


def salesflow_command() -> list[str]:
    """The CLI of the interpreter running the benchmarks, so the venv's salesflow is measured."""
    return [str(Path(sys.executable).with_name("salesflow"))]


def daily_files(rows: int, files: int, seed: int = 42) -> list[Path]:
    """The cached clean daily CSV files for `rows` rows over `files` days, generated if missing."""
    rows_per_day = max(1, rows // files)
    folder = DATA_ROOT / f"rows{rows_per_day * files}-files{files}-seed{seed}"
    if not (folder / COMPLETE_MARKER).exists():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {rows_per_day * files:,} rows over {files} files into {folder}")
        subprocess.run(
            [
                *salesflow_command(),
                "generate",
                str(folder),
                "--days",
                str(files),
                "--rows-per-day",
                str(rows_per_day),
                "--seed",
                str(seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (folder / COMPLETE_MARKER).touch()
    return sorted(folder.glob("sales_*.csv"))
