"""The floor: one DuckDB SQL script doing salesflow's parse, transform and load, nothing else.

It bounds what salesflow can reach on this machine; every other contender is reported as a
multiple of it. Run as a child process: `python -m benchmarks.floor WAREHOUSE FILE...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from salesflow.transform import TicketBands
from salesflow.warehouse.base import DAILY_SALES_SELECT

SCRIPT = Path(__file__).with_name("floor.sql")


def floor_sql(sources: list[Path]) -> str:
    """floor.sql with the files, the ticket bands and the mart's SELECT taken from salesflow."""
    bands = TicketBands()
    listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in sources)
    return SCRIPT.read_text().format(
        sources=f"[{listed}]",
        low_max=bands.low_max,
        medium_max=bands.medium_max,
        high_max=bands.high_max,
        daily_sales_select=DAILY_SALES_SELECT.strip(),
    )


def load_floor(warehouse: Path, sources: list[Path]) -> int:
    """Run the script into a fresh DuckDB file; return the rows loaded into `sales`."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute(floor_sql(sources))
        row = con.execute("SELECT count(*) FROM sales").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    rows = load_floor(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
    print(f"rows={rows}")
