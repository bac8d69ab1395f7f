"""What every warehouse guarantees, run against each backend (see conftest.py): atomic batch
replace, reconciliation, the mart, failure records, undo, duplicates across batches, time
limits and the read paths. What only one backend has is in test_<backend>_dialect.py."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

from salesflow import stages
from salesflow.contract import CONTRACT_VERSION
from salesflow.errors import (
    LoadTimeoutError,
    ReconciliationError,
    RejectThresholdError,
    UsageError,
)
from salesflow.manifest import BatchStatus
from salesflow.rules import ValidationRules
from salesflow.sources.generator import generate_sales
from salesflow.warehouse.base import LoadPolicy, RunRecord, Warehouse
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.warehouse.batches import TABLES, checksums, staged

# What `fetch` raises for a statement that writes: today each backend lets its driver's own
# error through (see the report of the suite's merge; the src refactor may unify them).
READ_ONLY_ERROR: dict[str, type[Exception]] = {
    "duckdb": duckdb.InvalidInputException,
    "postgres": psycopg.errors.ReadOnlySqlTransaction,
}


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- loading ------------------------------------------------------------------------------


def test_load_writes_valid_rows_rejects_and_batch_record(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    outcome = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    assert (outcome.status, outcome.rows_in, outcome.rows_loaded, outcome.rows_rejected) == (
        BatchStatus.LOADED,
        6,
        4,
        2,
    )
    assert outcome.amount_loaded == Decimal("133.7500")
    assert warehouse.fetch(
        "SELECT order_id, sku, total, ticket_size, order_ts FROM sales ORDER BY source_row"
    ) == [
        ("O1", "S1", Decimal("21.0000"), "low", _ts("2024-03-01 10:00")),
        ("O1", "S2", Decimal("3.2500"), "low", _ts("2024-03-01 10:00")),
        ("O2", "S1", Decimal("-10.5000"), "return", _ts("2024-03-01 11:00")),
        ("O3", "S3", Decimal("120.0000"), "medium", _ts("2024-03-02 09:00")),
    ]
    assert warehouse.fetch(
        "SELECT source_row, reasons FROM sales_rejected ORDER BY source_row"
    ) == [
        (5, ["zero_quantity"]),
        (6, ["duplicate"]),
    ]
    assert warehouse.fetch(
        "SELECT batch_id, rows_in, rows_loaded, rows_rejected, amount_loaded, status, error, "
        "contract_version, flow_run_id FROM batches"
    ) == [("day1.csv", 6, 4, 2, Decimal("133.7500"), "loaded", None, CONTRACT_VERSION, "run-1")]
    assert warehouse.read_back("day1.csv").mismatch(outcome) is None


def test_daily_sales_mart_counts_orders_units_revenue_and_returns(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), None)

    assert warehouse.fetch("SELECT * FROM daily_sales ORDER BY order_date") == [
        (date(2024, 3, 1), "North", "Home", 2, 2, Decimal("13.7500"), Decimal("10.5000")),
        (date(2024, 3, 2), "South", None, 1, 3, Decimal("120.0000"), Decimal("0")),
    ]


def test_reloading_a_batch_leaves_the_warehouse_identical(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)

    warehouse.load_batch(staged(day_file, tmp_path / "second"), "run-1")

    after = checksums(warehouse)
    for table in TABLES:
        assert after[table] == before[table], table
    assert {t: after[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert warehouse.fetch("SELECT count(*) FROM batches") == [(1,)]


def test_changed_file_replaces_its_batch_and_clears_mart_dates_it_no_longer_has(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), None)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")

    warehouse.load_batch(staged(day_file, tmp_path / "second"), None)

    assert warehouse.fetch("SELECT order_id FROM sales") == [("O9",)]
    assert warehouse.fetch("SELECT count(*) FROM sales_rejected") == [(0,)]
    assert warehouse.fetch("SELECT order_date, region, net_revenue FROM daily_sales") == [
        (date(2024, 3, 5), "East", Decimal("10.5000"))
    ]


def test_reconciliation_mismatch_fails_the_batch_and_keeps_the_previous_state(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    tampered = staged(day_file, tmp_path / "second").model_copy(update={"amount": Decimal("1")})

    expected = r"amount loaded 133\.7500 != amount transformed 1"
    with pytest.raises(ReconciliationError, match=expected):
        warehouse.load_batch(tampered, "run-2")

    assert checksums(warehouse) == before


def test_money_is_recomputed_from_the_raw_text_not_taken_from_the_transform(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    manifest = staged(day_file, tmp_path / "stage")
    # A transform bug that doubles every total, with a manifest that agrees with it.
    sales = pl.read_parquet(manifest.sales_path)
    sales.with_columns(pl.col("total") * 2).write_parquet(manifest.sales_path)
    doubled = manifest.model_copy(update={"amount": manifest.amount * 2})

    with pytest.raises(ReconciliationError, match=r"amount from the raw input 133\.7500"):
        warehouse.load_batch(doubled, "run-1")

    assert warehouse.fetch("SELECT count(*) FROM sales") == [(0,)]


def test_crash_in_the_middle_of_a_load_rolls_back_to_the_previous_state(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    broken = staged(day_file, tmp_path / "second")
    broken.rejected_path.unlink()  # sales rows get inserted, then reading rejects fails

    with pytest.raises(Exception, match=r"rejected\.parquet"):
        warehouse.load_batch(broken, "run-2")

    assert checksums(warehouse) == before


def test_too_many_rejects_fail_the_batch_and_load_nothing(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    strict = LoadPolicy(max_reject_share=0.2)

    with pytest.raises(
        RejectThresholdError, match=r"2 of 6 rows rejected \(33\.3%.*zero_quantity 1"
    ):
        warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1", strict)

    assert warehouse.fetch("SELECT count(*) FROM sales UNION ALL SELECT count(*) FROM batches") == [
        (0,),
        (0,),
    ]
    accepted = LoadPolicy(max_reject_share=0.2, accept_rejects=True)
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "again"), "run-2", accepted)
    assert loaded.status == BatchStatus.LOADED


def test_a_failed_attempt_keeps_the_loaded_rows_and_is_not_taken_as_loaded(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    manifest = staged(day_file, tmp_path / "stage")
    loaded = warehouse.load_batch(manifest, "run-1")
    assert warehouse.loaded_sha256("day1.csv") == manifest.sha256
    assert warehouse.source_index().sha256_of_batch == {"day1.csv": manifest.sha256}
    sales_before = warehouse.table_checksum("sales")

    failure = stages.failed_outcome(day_file, ValueError("boom"), loaded.started_at, "run-2")
    warehouse.record_outcome(failure)

    assert warehouse.table_checksum("sales") == sales_before
    assert warehouse.fetch("SELECT status, error, rows_loaded, flow_run_id FROM batches") == [
        ("failed", f"{day_file}: unexpected ValueError: boom", 4, "run-2")
    ]
    assert warehouse.loaded_sha256("day1.csv") is None
    assert warehouse.source_index().sha256_of_batch == {}


def test_content_another_run_loaded_meanwhile_is_skipped_not_loaded_twice(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    # Two runs both extracted the file before either committed; the second commit is a skip.
    first = staged(day_file, tmp_path / "first").model_copy(update={"force": False})
    second = staged(day_file, tmp_path / "second").model_copy(update={"force": False})
    warehouse.load_batch(first, "run-1")
    before = checksums(warehouse)

    outcome = warehouse.load_batch(second, "run-2")

    assert outcome.status == BatchStatus.SKIPPED
    after = checksums(warehouse)
    assert {t: after[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert warehouse.fetch("SELECT status, rows_loaded, flow_run_id FROM batches") == [
        ("skipped", 4, "run-2")
    ]


# --- duplicates across batches: one rule on every backend ------------------------------------


def test_rows_another_batch_loaded_are_quarantined(warehouse: Warehouse, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    first = write_csv(
        landing / "a.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C1,S2,Mug,,1,3.25,North",
    )
    later = write_csv(
        landing / "b.csv",
        "region,order_id,order_ts,sku,product,category,quantity,unit_price,customer_id",
        "North,O1,2024-03-01T10:00:00,S1,Kettle,Home,2,10.5000,",  # a.csv's first row
        "North,O2,2024-03-01T11:00:00,S2,Mug,,1,3.25,C9",  # differs in customer_id only
        "North,O3,2024-03-01T12:00:00,S3,Lamp,,1,40,",
    )
    warehouse.load_batch(staged(first, tmp_path / "a"), "run-1")
    moved = warehouse.load_batch(staged(later, tmp_path / "b"), "run-1")

    assert (moved.rows_loaded, moved.rows_rejected, moved.amount_loaded) == (2, 1, Decimal("43.25"))
    assert moved.reason_counts == {"duplicate_in_warehouse": 1}
    # The same literal rows on every backend: what used to be "PostgreSQL == DuckDB".
    rejected = "SELECT batch_id, source_row, reasons, raw FROM sales_rejected ORDER BY 1, 2"
    assert warehouse.fetch(rejected) == [
        (
            "b.csv",
            1,
            ["duplicate_in_warehouse"],
            '{"region":"North","order_id":"O1","order_ts":"2024-03-01T10:00:00","sku":"S1",'
            '"product":"Kettle","category":"Home","quantity":"2","unit_price":"10.5000",'
            '"customer_id":null}',
        )
    ]
    rows = "SELECT batch_id, source_row, total FROM sales ORDER BY 1, 2"
    assert warehouse.fetch(rows) == [
        ("a.csv", 1, Decimal("21.0000")),
        ("a.csv", 2, Decimal("3.2500")),
        ("b.csv", 2, Decimal("3.2500")),
        ("b.csv", 3, Decimal("40.0000")),
    ]
    assert warehouse.fetch("SELECT * FROM daily_sales ORDER BY 1, 2, 3") == [
        (date(2024, 3, 1), "North", "Home", 1, 2, Decimal("21.0000"), Decimal("0")),
        (date(2024, 3, 1), "North", None, 2, 3, Decimal("46.5000"), Decimal("0")),
    ]
    # The dry run finds the same row before a load of b.csv would move it.
    again = staged(later, tmp_path / "dry")
    assert warehouse.loaded_duplicates(again) == [1]

    off = LoadPolicy(reject_duplicates_in_warehouse=False)
    kept = warehouse.load_batch(staged(later, tmp_path / "off"), "run-2", off)
    assert (kept.rows_loaded, kept.rows_rejected) == (3, 0)


# --- time limits, undo, runs ----------------------------------------------------------------


def test_a_load_past_its_time_limit_is_interrupted_and_rolled_back(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    (big,) = generate_sales(tmp_path / "big", date(2024, 3, 1), 1, 200_000, seed=3)
    manifest = staged(big, tmp_path / "second")

    with pytest.raises(LoadTimeoutError, match=r"longer than 0\.01 s and was rolled back"):
        warehouse.load_batch(manifest, "run-2", LoadPolicy(timeout_seconds=0.01))

    assert checksums(warehouse) == before


def test_restoring_the_previous_version_undoes_a_committed_load(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "first"), "run-1")
    before = checksums(warehouse)
    write_csv(day_file, CANONICAL_HEADER, "O9,2024-03-05T10:00:00,C1,S1,Kettle,Home,1,10.50,East")
    undo = tmp_path / "undo" / "day1.csv"
    replaced = warehouse.load_batch(
        staged(day_file, tmp_path / "second"), "run-2", LoadPolicy(undo_dir=undo)
    )
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(1,)]

    assert warehouse.restore_previous_version(replaced, undo) is True

    assert checksums(warehouse) == before  # rows, rejects, the mart and the batches row
    # Once replaced by a later load, a stale rollback leaves that load alone.
    newer = warehouse.load_batch(staged(day_file, tmp_path / "third"), "run-3")
    assert warehouse.restore_previous_version(replaced, undo) is False
    assert warehouse.read_back("day1.csv").mismatch(newer) is None


def test_rolling_back_a_first_load_leaves_no_trace_of_the_batch(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    undo = tmp_path / "undo"
    loaded = warehouse.load_batch(
        staged(day_file, tmp_path / "stage"), "run-1", LoadPolicy(undo_dir=undo)
    )

    assert warehouse.restore_previous_version(loaded, undo) is True

    assert warehouse.fetch(
        "SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM sales_rejected), "
        "(SELECT count(*) FROM daily_sales), (SELECT count(*) FROM batches)"
    ) == [(0, 0, 0, 0)]


def test_runs_are_recorded_with_counts_from_their_batches(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    warehouse.record_run(RunRecord("run-1", "salesflow-etl", "Completed"))
    warehouse.record_run(RunRecord("run-1", "salesflow-etl", "Completed", message="rewritten"))

    assert warehouse.fetch(
        "SELECT flow_run_id, state, batches, loaded, rows_in, rows_loaded, rows_rejected, "
        "amount_loaded, message FROM runs"
    ) == [("run-1", "Completed", 1, 1, 6, 4, 2, Decimal("133.7500"), "rewritten")]


# --- read paths ---------------------------------------------------------------------------


def test_fetch_takes_the_queries_the_flow_writes(
    warehouse: Warehouse, backend: str, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")

    # The quality artifact's sample query, as flows/artifacts.py sends it.
    assert warehouse.fetch(
        "SELECT batch_id, source_row FROM sales_rejected WHERE list_contains(?, batch_id) "
        "AND raw NOT LIKE '%?%' ORDER BY batch_id, source_row LIMIT ?",
        [["day1.csv", "other.csv"], 1],
    ) == [("day1.csv", 5)]
    assert warehouse.fetch("SELECT count(*) FROM sales WHERE sku LIKE 'S%'") == [(4,)]
    with pytest.raises(READ_ONLY_ERROR[backend]):
        warehouse.fetch("DELETE FROM sales")


def test_checksum_is_refused_for_unknown_tables(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="no checksum defined"):
        warehouse.table_checksum("sales; DROP TABLE sales")


def test_holds_data_only_once_the_tables_exist(warehouse: Warehouse) -> None:
    assert warehouse.holds_data() is False

    warehouse.ensure_schema()

    assert warehouse.holds_data() is True


def test_a_users_query_gives_the_same_columns_and_rows_on_every_backend(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    by_region = (
        "SELECT region, count(*) AS n, sum(total) AS revenue FROM sales "
        "WHERE sku LIKE 'S%' AND product <> '?' GROUP BY region ORDER BY region"
    )

    assert warehouse.query(by_region, 10) == (
        ["region", "n", "revenue"],
        [("North", 3, Decimal("13.75")), ("South", 1, 120)],
    )
    assert warehouse.query(by_region, 1) == (
        ["region", "n", "revenue"],
        [("North", 3, Decimal("13.75"))],
    )
    assert len(warehouse.query(by_region, 1).rows) == 1


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("DELETE FROM sales", "read-only"),
    ],
)
def test_a_bad_or_writing_query_is_one_usage_line_and_changes_nothing(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, statement: str, problem: str
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    before = checksums(warehouse)

    with pytest.raises(UsageError, match=r"^query failed: ") as raised:
        warehouse.query(statement, 5)

    assert problem in str(raised.value) and "\n" not in str(raised.value)
    assert checksums(warehouse) == before


def test_check_source_reports_rows_the_warehouse_already_holds(
    warehouse: Warehouse, day_file: Path, tmp_path: Path
) -> None:
    copy = write_csv(
        tmp_path / "landing" / "copy.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",  # loaded from day1.csv
        "O9,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
    )
    empty = stages.check_source(copy, ValidationRules(), warehouse)
    assert (empty.rows_valid, empty.reason_counts) == (2, {})

    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    checked = stages.check_source(copy, ValidationRules(), warehouse)

    assert (checked.rows_valid, checked.rows_rejected) == (1, 1)
    assert checked.reason_counts == {"duplicate_in_warehouse": 1}
