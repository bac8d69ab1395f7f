"""The dlt contender: the same CSV files into DuckDB the way a data engineer would with dlt.

dlt's own filesystem source lists the files with an incremental cursor on their
`modification_date` (the idiom of dlt's "load new files incrementally" docs), so a second run on
the same pipeline skips every file it has already loaded. A transformer reads each listed file
with pyarrow.csv into one Arrow table, adds the floor's derived columns with pyarrow.compute
(total, ticket size, month, weekday, order date, batch id, source row) and yields the table, so
dlt takes its Arrow path: the table is written to Parquet at extract and DuckDB reads that Parquet
at load, no row goes through Python. After a load that brought rows, the daily mart is rebuilt
with the warehouse's own DAILY_SALES_SELECT through the pipeline's SQL client.

No validation: a value pyarrow cannot parse fails the whole run, anything it can parse is loaded
as it is. Run as a child process: `python -m benchmarks.dlt_load MODE WAREHOUSE FILE...`, MODE
`append` or `merge`. The pipeline's state lives next to WAREHOUSE (in WAREHOUSE's folder, under
`dlt-pipelines/`), never in ~/.dlt; run the same command again for the unchanged re-run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

# Set before dlt is imported, so its configuration never reads the default: no telemetry.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
from dlt.common.schema.typing import TColumnSchema
from dlt.sources.filesystem import FileItemDict, filesystem

from salesflow.transform import TicketBands
from salesflow.warehouse.base import DAILY_SALES_SELECT

MODES = ("append", "merge")
PIPELINE_NAME = "salesflow_bench"
DATASET = "salesflow"
# The real key of a sales line. A merge on order_id alone keeps one line per order and silently
# drops the other lines of every multi-line order, with no error or warning: tried on the 30,000
# generated rows of 3 days, it stored 17,281 (one per order).
PRIMARY_KEY = ("order_id", "sku")
MONEY = pa.decimal128(18, 4)
# The floor's read_csv column types (benchmarks/floor.sql).
COLUMN_TYPES: dict[str, pa.DataType] = {
    "order_id": pa.string(),
    "order_ts": pa.timestamp("us"),
    "customer_id": pa.string(),
    "sku": pa.string(),
    "product": pa.string(),
    "category": pa.string(),
    "quantity": pa.int64(),
    "unit_price": MONEY,
    "region": pa.string(),
}
# As DuckDB's read_csv: an empty field is NULL, in a text column too (pyarrow's default keeps
# "" for text, and takes "NA", "null" and the like for NULL).
CONVERT = pv.ConvertOptions(column_types=COLUMN_TYPES, null_values=[""], strings_can_be_null=True)
BANDS = TicketBands()


def ticket_size(total: pa.ChunkedArray) -> pa.ChunkedArray:
    """The floor's CASE on the total: return, low, medium, high, very_high."""
    low, medium, high = (pa.scalar(bound, MONEY) for bound in _bounds())
    conditions = pc.make_struct(
        pc.less(total, pa.scalar(Decimal(0), MONEY)),
        pc.less_equal(total, low),
        pc.less_equal(total, medium),
        pc.less_equal(total, high),
        field_names=["return", "low", "medium", "high"],
    )
    return pc.case_when(conditions, "return", "low", "medium", "high", "very_high")


def _bounds() -> tuple[Decimal, Decimal, Decimal]:
    return BANDS.low_max, BANDS.medium_max, BANDS.high_max


def transform_file(path: Path, key_not_null: bool = False) -> pa.Table:
    """One daily file as an Arrow table with the floor's columns, in the floor's order.

    `key_not_null` declares the primary key's columns NOT NULL in the Arrow schema, as dlt's
    merge declares them in the table (without it dlt warns, per file, that the hints differ).
    """
    raw = pv.read_csv(path, convert_options=CONVERT)
    total = pc.cast(
        pc.multiply(raw["unit_price"], pc.cast(raw["quantity"], pa.decimal128(19, 0))), MONEY
    )
    order_ts = raw["order_ts"]
    rows = raw.num_rows
    columns: dict[str, Any] = {
        "order_id": raw["order_id"],
        "order_ts": order_ts,
        "order_date": pc.cast(order_ts, pa.date32()),
        "customer_id": raw["customer_id"],
        "sku": raw["sku"],
        "product": raw["product"],
        "category": raw["category"],
        "quantity": raw["quantity"],
        "unit_price": raw["unit_price"],
        "total": total,
        "ticket_size": ticket_size(total),
        "month": pc.strftime(order_ts, "%Y-%m"),
        "weekday": pc.strftime(order_ts, "%A"),
        "region": raw["region"],
        "batch_id": pa.repeat(path.name, rows) if rows else pa.array([], pa.string()),
        "source_row": pa.array(range(1, rows + 1), pa.int64()),
    }
    table = pa.table(columns)
    if key_not_null:
        schema = pa.schema(
            [field.with_nullable(field.name not in PRIMARY_KEY) for field in table.schema]
        )
        table = table.cast(schema)
    return table


def sales_resource(sources: list[Path], mode: str) -> Any:
    """dlt's filesystem listing of the files' folder, new files only, piped into the reader."""
    folders = {path.resolve().parent for path in sources}
    if len(folders) != 1:
        raise SystemExit("dlt_load: every file must be in one folder (dlt lists a folder)")
    wanted = {path.name for path in sources}
    files = filesystem(bucket_url=folders.pop().as_uri(), file_glob="*.csv")
    # Only the files asked for, then only those modified since the last run: dlt keeps the
    # largest modification_date seen in the pipeline state and drops files not newer than it.
    files.add_filter(lambda item: item["file_name"] in wanted)
    files.apply_hints(incremental=dlt.sources.incremental("modification_date"))

    @dlt.transformer(name="sales")
    def read_sales(items: list[FileItemDict]) -> Iterator[pa.Table]:
        for item in items:
            yield transform_file(Path(item.local_file_path), key_not_null=mode == "merge")

    resource = files | read_sales
    # dlt makes every timestamp TIMESTAMP WITH TIME ZONE unless told otherwise; the floor's
    # order_ts is a plain TIMESTAMP.
    naive: dict[str, TColumnSchema] = {"order_ts": {"data_type": "timestamp", "timezone": False}}
    if mode == "merge":
        resource.apply_hints(
            write_disposition="merge", primary_key=list(PRIMARY_KEY), columns=naive
        )
    else:
        resource.apply_hints(write_disposition="append", columns=naive)
    return resource


def load_dlt(mode: str, warehouse: Path, sources: list[Path]) -> int:
    """Run the pipeline into `warehouse`; rebuild the mart if rows came; return the rows loaded."""
    if mode not in MODES:
        raise SystemExit(f"dlt_load: MODE must be one of {', '.join(MODES)}, not {mode!r}")
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(warehouse.parent / "dlt-pipelines"),
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name=DATASET,
    )
    pipeline.run(sales_resource(sources, mode))
    trace = pipeline.last_trace
    normalized = trace.last_normalize_info if trace is not None else None
    rows = normalized.row_counts.get("sales", 0) if normalized is not None else 0
    if rows:
        mart = f"{DAILY_SALES_SELECT} GROUP BY order_date, region, category"
        with pipeline.sql_client() as client:
            client.execute_sql(f"CREATE OR REPLACE TABLE daily_sales AS {mart}")
    return rows


if __name__ == "__main__":
    loaded = load_dlt(sys.argv[1], Path(sys.argv[2]), [Path(arg) for arg in sys.argv[3:]])
    print(f"rows={loaded}")
