"""Validation: split one batch into rows that honour the contract and rows quarantined with reasons.

No Prefect, no files: DuckDB checks the whole batch in one SQL pass (`validate_sql`), in memory.
Every input row comes out exactly once, either typed in `valid` or, with its reason codes and
the record as read, in `rejected`.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
from duckdb.func import FunctionNullHandling, PythonUDFType
from duckdb.sqltypes import TIMESTAMP, VARCHAR

from salesflow.contract import (
    CANONICAL_COLUMNS,
    FIELD_COUNT,
    INTERNAL_COLUMNS,
    RECORD_TEXT,
    SOURCE_ROW,
)
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.validate_sql import (
    OTHER_TIMESTAMPS,
    RawLayout,
    checked_table_sql,
    checks,
    field,
    parameters,
    sales_sql,
)
from salesflow.value_parsing import parse_order_ts

VALID_COLUMNS: Final = (*CANONICAL_COLUMNS, "source_row")
REJECTED_COLUMNS: Final = ("source_row", "reasons", "raw")


@dataclass(frozen=True)
class ValidationResult:
    """One batch, split: its valid rows as `sales` rows (SALES_COLUMNS, transformed), the
    rejected ones with REJECTED_COLUMNS."""

    sales: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def valid(self) -> pl.DataFrame:
        """The valid rows as validated (VALID_COLUMNS), before the transform's columns."""
        return self.sales.select(VALID_COLUMNS)

    def reason_counts(self) -> dict[str, int]:
        """How many rejected rows carry each reason code (a row may carry several)."""
        return count_reasons(self.rejected)


def count_reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.is_empty():
        return {}
    counts = rejected.select(pl.col("reasons").explode()).to_series().value_counts(sort=True)
    return {str(code): int(count) for code, count in counts.iter_rows()}


def count_odd_but_valid(valid: pl.DataFrame) -> dict[str, int]:
    """Valid rows worth a warning: free items (price 0) and returns; only kinds that occur."""
    counts = valid.select(
        (pl.col("unit_price") == 0).sum().alias("zero_price"),
        (pl.col("quantity") < 0).sum().alias("returns"),
    ).row(0, named=True)
    return {kind: int(count) for kind, count in counts.items() if count}


def validate_batch(
    raw: pl.DataFrame,
    column_map: Mapping[str, str],
    batch_id: str,
    rules: ValidationRules | None = None,
    bands: TicketBands | None = None,
) -> ValidationResult:
    """Check every row of a text-typed batch against the contract, and transform the valid
    ones into `sales` rows (ticket sizes by `bands`).

    `raw` is a staged batch: the file's own columns as text plus SOURCE_ROW (and FIELD_COUNT,
    RECORD_TEXT where the reader set them). `column_map` maps canonical names to the file's (see
    sources.files.map_columns). A row without an order_id column gets a deterministic one from
    the batch and its row number. A JSON Lines line that was no object (RECORD_TEXT set) is
    rejected as `malformed_record`, its line kept as `raw`.
    """
    header = tuple(name for name in raw.columns if name not in INTERNAL_COLUMNS)
    positional = raw.select(
        *(pl.col(name).alias(field(index)) for index, name in enumerate(header)),
        pl.col(SOURCE_ROW).cast(pl.Int64).alias("source_row"),
        _internal(raw, FIELD_COUNT, pl.Int32()).alias("field_count"),
        _internal(raw, RECORD_TEXT, pl.String()).alias("record_text"),
    )
    with batch_cursor() as con:
        con.register("raw_batch", positional.to_arrow())
        return classify(con, RawLayout("raw_batch", header), column_map, batch_id, rules, bands)


_database: tuple[int, duckdb.DuckDBPyConnection] | None = None
_database_lock = threading.Lock()
_function_numbers = itertools.count()


@contextmanager
def batch_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of its own to this process's in-memory DuckDB database, for one batch.

    Opening an in-memory database costs 30-45 ms, a batch of a few rows' whole validation; a
    cursor on a shared one costs microseconds. Its temporary tables and registered frames are
    its own, so batches validated side by side never see each other's. The database is made
    anew in a forked child (a Dask worker): a DuckDB database is never shared across a fork.
    """
    global _database
    with _database_lock:
        if _database is None or _database[0] != os.getpid():
            _database = (os.getpid(), duckdb.connect())
        cursor = _database[1].cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _internal(raw: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name).cast(dtype) if name in raw.columns else pl.lit(None, dtype)


def classify(
    con: duckdb.DuckDBPyConnection,
    raw: RawLayout,
    column_map: Mapping[str, str],
    batch_id: str,
    rules: ValidationRules | None = None,
    bands: TicketBands | None = None,
) -> ValidationResult:
    """Split the batch relation `raw` on `con`: valid rows as `sales` rows, rejected ones with
    their reasons (in contract order) and their record as read, JSON-encoded."""
    rules = rules or ValidationRules()
    has_text = f"SELECT bool_or(record_text IS NOT NULL) FROM {raw.relation}"
    malformed = bool(con.execute(has_text).fetchall()[0][0])

    def other_timestamps(texts: pa.Array) -> pa.Array:
        return parse_order_ts(pl.Series(texts), rules).to_arrow()

    # Functions belong to the database, which cursors share: each batch's (it knows the
    # batch's rules) has a name of its own, removed once the batch is classified.
    timestamps = f"{OTHER_TIMESTAMPS}_{next(_function_numbers)}"
    con.create_function(
        timestamps,
        other_timestamps,
        [VARCHAR],
        TIMESTAMP,
        type=PythonUDFType.ARROW,
        null_handling=FunctionNullHandling.SPECIAL,
    )
    applied = checks(rules, len(raw.header), malformed)
    statement = checked_table_sql(raw, column_map, rules, malformed, applied, timestamps)
    try:
        con.execute(statement, parameters(statement, batch_id))
    finally:
        con.remove_function(timestamps)
    flags = [f"f{index}" for index in range(len(applied))]
    rejected_when = " OR ".join(flags)
    sales_query = sales_sql(rejected_when, bands or TicketBands())
    sales = con.sql(sales_query, params=parameters(sales_query, batch_id)).pl()
    reasons = ", ".join(
        f"CASE WHEN {flag} THEN '{code}' END"
        for flag, (_, code) in zip(flags, applied, strict=True)
    )
    as_read = [f"r.{name}" for name in raw.fields()] + ["r.record_text"]
    rejected = con.sql(
        f"""
        SELECT c.source_row, list_filter([{reasons}], lambda code: code IS NOT NULL) AS reasons,
               {", ".join(as_read)}
        FROM checked c JOIN {raw.relation} r USING (source_row)
        WHERE {rejected_when} ORDER BY c.source_row
        """
    ).pl()
    con.execute("DROP TABLE checked")
    # The struct takes the file's headers as field names, so a header may be any text, even
    # `source_row` or `reasons`, without meeting this frame's own columns.
    rejected = (
        rejected.rename({"record_text": RECORD_TEXT})
        .with_columns(_as_read(raw.header).alias("_as_read"))
        .select(
            "source_row",
            pl.col("reasons").cast(pl.List(pl.String)),
            _raw_json(malformed).alias("raw"),
        )
    )
    return ValidationResult(sales=sales, rejected=rejected)


def _as_read(header: Sequence[str]) -> pl.Expr:
    """The record as read (the positional fields), keyed by the file's own headers."""
    return pl.struct([pl.col(field(index)).alias(name) for index, name in enumerate(header)])


def _raw_json(malformed: bool) -> pl.Expr:
    """`raw` of a rejected row: the record as read as a JSON object; for a malformed line, its
    text as a JSON string, so `raw` stays JSON for whoever queries it and decodes to the line.
    """
    record = pl.col("_as_read").struct.json_encode()
    if not malformed:
        return record
    # {"__record_text": "<line>"} -> "<line>", encoded by Polars (vectorised).
    prefix = len(json.dumps(RECORD_TEXT)) + 2
    line = pl.struct(RECORD_TEXT).struct.json_encode().str.slice(prefix).str.head(-1)
    return pl.when(pl.col(RECORD_TEXT).is_not_null()).then(line).otherwise(record)
