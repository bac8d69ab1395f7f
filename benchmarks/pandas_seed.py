"""The pandas baseline: the course-style pipeline salesflow grew from, kept realistic.

One pandas.read_csv per file, dropna/drop_duplicates as the cleaning, a row-wise `apply` for the
ticket size (as the seed did), then an insert into DuckDB and the same daily mart. It shows what
salesflow replaces. Run as a child process: `python -m benchmarks.pandas_seed WAREHOUSE FILE...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pandas as pd

from salesflow.transform import TicketBands
from salesflow.warehouse.base import DAILY_SALES_SELECT

BANDS = TicketBands()


def ticket_size(total: float) -> str:
    """The seed's per-row function, called through Series.apply."""
    if total < 0:
        return "return"
    if total <= float(BANDS.low_max):
        return "low"
    if total <= float(BANDS.medium_max):
        return "medium"
    if total <= float(BANDS.high_max):
        return "high"
    return "very_high"


def transform_file(path: Path) -> pd.DataFrame:
    """Read and transform one daily file the way the course notebook did."""
    frame = pd.read_csv(path, dtype={"customer_id": "string", "order_id": "string"})
    frame["source_row"] = range(1, len(frame) + 1)
    frame = frame.dropna(subset=["order_id", "sku", "order_ts", "quantity", "unit_price"])
    frame = frame.drop_duplicates(subset=[c for c in frame.columns if c != "source_row"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"])
    frame["order_date"] = frame["order_ts"].dt.date
    frame["total"] = (frame["quantity"] * frame["unit_price"]).round(4)
    frame["ticket_size"] = frame["total"].apply(ticket_size)
    frame["month"] = frame["order_ts"].dt.strftime("%Y-%m")
    frame["weekday"] = frame["order_ts"].dt.day_name()
    frame["batch_id"] = path.name
    return frame


def load_pandas(warehouse: Path, sources: list[Path]) -> int:
    """Transform every file, insert each into DuckDB, build the daily mart; return rows loaded."""
    rows = 0
    with duckdb.connect(str(warehouse)) as con:
        for number, path in enumerate(sources):
            frame = transform_file(path)
            con.register("batch", frame)
            if number == 0:
                con.execute("CREATE TABLE sales AS SELECT * FROM batch")
            else:
                con.execute("INSERT INTO sales BY NAME SELECT * FROM batch")
            con.unregister("batch")
            rows += len(frame)
        mart = f"{DAILY_SALES_SELECT} GROUP BY order_date, region, category"
        con.execute(f"CREATE TABLE daily_sales AS {mart}")
    return rows


if __name__ == "__main__":
    loaded = load_pandas(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
    print(f"rows={loaded}")
