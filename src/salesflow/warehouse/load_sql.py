"""The statements of a batch load and its undo, written once for every dialect.

Plain table names and `?` placeholders: a dialect renders them (salesflow.warehouse.dialects).
The staged relations they read (`staged_sales`, `staged_raw_money`) and the temporary table
`repeated` are made inside the load's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from salesflow.contract import CONTRACT_VERSION, SALES_COLUMNS
from salesflow.manifest import BatchOutcome
from salesflow.warehouse.base import DAILY_SALES_SELECT, repeated_row_condition

# The tables holding a batch's rows: saved before a load replaces them, restored on rollback.
UNDO_TABLES = ("sales", "sales_rejected", "batches")

# This very content is loaded (or was skipped as loaded) under this batch id.
HOLDS_CONTENT_SQL = (
    "SELECT count(*) FROM batches WHERE batch_id = ? AND sha256 = ? "
    "AND rows_in IS NOT NULL AND status IN ('loaded', 'skipped')"
)

# Whether the load the flow is undoing is still the batch's latest: a later load wins.
IS_LOAD_OF_SQL = (
    "SELECT count(*) FROM batches WHERE batch_id = ? AND status = 'loaded' "
    "AND sha256 IS NOT DISTINCT FROM ? AND finished_at = ? "
    "AND flow_run_id IS NOT DISTINCT FROM ?"
)

DATES_OF_BATCH_SQL = "SELECT DISTINCT order_date FROM sales WHERE batch_id = ?"

# Whether the warehouse has ever recorded the batch: a load writes its rows and its `batches`
# row in one transaction (an undo restores both), so a batch never recorded holds no rows and
# its load has nothing to delete and no old dates to look up, scans of the whole, growing
# `sales` table that a new batch would pay for nothing.
BATCH_RECORDED_SQL = "SELECT count(*) FROM batches WHERE batch_id = ?"

# The dates the staged rows cover: the first and last bound the statements that read the
# batch's rows back from `sales`, so DuckDB skips the row groups of other days (its statistics
# on the text `batch_id` cannot), and the distinct ones are the mart's touched dates.
STAGED_DATES_SQL = "SELECT DISTINCT order_date FROM staged_sales"

INSERT_STAGED_SALES_SQL = (
    f"INSERT INTO sales SELECT {', '.join(SALES_COLUMNS)} FROM staged_sales s "
    "WHERE NOT EXISTS (SELECT 1 FROM repeated r WHERE r.source_row = s.source_row)"
)

LOADED_TOTALS_SQL = "SELECT count(*), coalesce(sum(total), 0) FROM sales WHERE batch_id = ?"

# Money of the loaded rows recomputed by the database from the raw text, not from Polars.
AMOUNT_FROM_RAW_SQL = (
    "SELECT coalesce(sum(CAST(trim(r.quantity) AS DECIMAL(18, 0)) "
    "* CAST(trim(r.unit_price) AS DECIMAL(18, 4))), 0) FROM staged_raw_money r "
    "WHERE r.source_row IN (SELECT source_row FROM sales WHERE batch_id = ? "
    "AND order_date BETWEEN ? AND ?)"
)

# The mart for the dates a load touched. Parameters: the dates (a list); for the insert, then
# the first and last of them, which let DuckDB skip the row groups of other days.
DELETE_DAILY_SALES_SQL = "DELETE FROM daily_sales WHERE order_date = ANY(CAST(? AS DATE[]))"
INSERT_DAILY_SALES_SQL = (
    f"INSERT INTO daily_sales {DAILY_SALES_SELECT} "
    "WHERE order_date = ANY(CAST(? AS DATE[])) AND order_date BETWEEN ? AND ? "
    "GROUP BY order_date, region, category"
)

BATCH_COLUMNS = (
    "batch_id, source, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, status, "
    "error, contract_version, started_at, finished_at, flow_run_id, source_size, source_mtime_ns"
)
INSERT_BATCH_SQL = (
    f"INSERT INTO batches ({BATCH_COLUMNS}) "
    f"VALUES ({', '.join(['?'] * len(BATCH_COLUMNS.split(', ')))})"
)


def batch_params(outcome: BatchOutcome) -> list[object]:
    """The parameters of INSERT_BATCH_SQL for one outcome: its fields by column name, with
    the status as text and this salesflow's contract version."""
    own = {"status": str(outcome.status), "contract_version": CONTRACT_VERSION}
    return [
        own[column] if column in own else getattr(outcome, column)
        for column in BATCH_COLUMNS.split(", ")
    ]


def reason_counts_sql(binary_collation: str) -> str:
    """A batch's rejected rows counted by reason, most frequent first, ties by code in byte
    order. Parameter: the batch id."""
    return (
        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM sales_rejected "
        f"WHERE batch_id = ?) AS r GROUP BY reason ORDER BY count(*) DESC, reason{binary_collation}"
    )


def repeated_rows_sql(derived_order_ids: bool, null_safe: Sequence[str] | None) -> str:
    """Staged rows repeating a row another batch loaded (see base.repeated_row_condition).
    Only the dates the batch spans are searched, so the cost follows the batch, not the
    warehouse. Parameter: the batch id."""
    return (
        "SELECT s.source_row, s.total FROM staged_sales s WHERE EXISTS (SELECT 1 FROM sales w "
        "WHERE w.order_date BETWEEN (SELECT min(order_date) FROM staged_sales) "
        "AND (SELECT max(order_date) FROM staged_sales) AND w.batch_id <> ? AND "
        f"{repeated_row_condition(derived_order_ids, null_safe)})"
    )


def batches_repeated_sql(derived_order_ids: bool, null_safe: Sequence[str] | None) -> str:
    """The batches holding the rows of `repeated`, for the message. Parameter: the batch id."""
    return (
        "SELECT DISTINCT w.batch_id FROM staged_sales s JOIN sales w ON w.batch_id <> ? "
        "AND w.order_date = s.order_date AND "
        f"{repeated_row_condition(derived_order_ids, null_safe)} "
        "WHERE s.source_row IN (SELECT source_row FROM repeated) ORDER BY 1 LIMIT 3"
    )


def checksum_sql(table: str, key: str) -> str:
    """A table's row count and the md5 of its rows as text, in natural key order."""
    return (
        f"SELECT count(*) || ':' || coalesce(md5(string_agg(CAST(t AS VARCHAR), chr(10) "
        f"ORDER BY {key})), '') FROM {table} AS t"
    )
