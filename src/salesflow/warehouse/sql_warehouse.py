"""The warehouse as one algorithm over any SQL dialect: the batch load, its undo, the attempt
records, the marts, reads and checksums.

Every batch load is one transaction that replaces exactly that batch's rows, quarantines rows
other batches already hold, reconciles counts and money (the money recomputed from the raw
text), refreshes the marts of the dates it touched and records the batch; a failure anywhere
leaves the previous state. The dialect (salesflow.warehouse.dialects) supplies connections,
placeholders and bulk transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

import salesflow.warehouse.load_sql as q
from salesflow.contract import SOURCE_ROW, Reason
from salesflow.faults import Place, named_faults
from salesflow.manifest import (
    BatchManifest,
    BatchOutcome,
    BatchStatus,
    outcome_of,
    skipped_outcome,
)
from salesflow.warehouse.base import (
    CONTENT_LOADED_ELSEWHERE_SQL,
    TABLE_KEYS,
    LoadPolicy,
    Observed,
    QueryResult,
    SqlQueries,
    reconcile,
)
from salesflow.warehouse.dialects import Dialect, StagedColumn
from salesflow.warehouse.records import RECORD_ATTEMPT_SQL, SqlRecords, attempt_params
from salesflow.warehouse.tables import SALES

STAGED_SALES = tuple(StagedColumn(c.name, c.name, c.type) for c in SALES.columns)


def _derived_order_ids(manifest: BatchManifest) -> bool:
    """Whether the batch's order ids were derived from its name (its file has none)."""
    return "order_id" not in manifest.column_map


class SqlWarehouse(SqlRecords, SqlQueries):
    """The sales, sales_rejected, batches, runs, watermarks, anomalies and daily_sales tables
    in one database, reached through its dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.location = dialect.location

    # --- statements -----------------------------------------------------------------------

    def _run(self, con: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a shared statement; the result fetches like a cursor on both dialects."""
        return con.execute(self.dialect.render(sql), list(params))

    def _scalar(self, con: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._run(con, sql, params).fetchone()
        return row[0] if row else None

    def _dates_of(self, con: Any, batch_id: str) -> list[Any]:
        return [row[0] for row in self._run(con, q.DATES_OF_BATCH_SQL, [batch_id]).fetchall()]

    # --- reading --------------------------------------------------------------------------

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read-only query; `?` placeholders on every dialect."""
        return self.dialect.fetch(sql, params)

    def holds_data(self) -> bool:
        return self.dialect.holds_data()

    def query(self, sql: str, limit: int) -> QueryResult:
        return self.dialect.query(sql, limit)

    def table_checksum(self, table: str) -> str:
        if table not in TABLE_KEYS:
            raise ValueError(f"no checksum defined for table {table!r}")
        return str(self.fetch(q.checksum_sql(table, TABLE_KEYS[table]))[0][0])

    def ensure_schema(self) -> None:
        self.dialect.ensure_schema()

    # --- loading --------------------------------------------------------------------------

    def load_batch(
        self, manifest: BatchManifest, flow_run_id: str | None, policy: LoadPolicy | None = None
    ) -> BatchOutcome:
        policy = policy or LoadPolicy()
        batch_id = manifest.batch_id
        with self.dialect.write_transaction(manifest.source, policy.timeout_seconds) as con:
            self._adopt_earlier_ids(con, batch_id, manifest.source, always=True)
            skipped = None if manifest.force else self._loaded_already(con, manifest, flow_run_id)
            if skipped is not None:
                self._record_attempt(con, skipped)
                return skipped
            if policy.undo_dir is not None:
                self._save_previous_version(con, batch_id, policy.undo_dir)
            old_dates: list[Any] = []
            if self._scalar(con, q.BATCH_RECORDED_SQL, [batch_id]):
                old_dates = self._dates_of(con, batch_id)
                self._run(con, "DELETE FROM sales WHERE batch_id = ?", [batch_id])
                self._run(con, "DELETE FROM sales_rejected WHERE batch_id = ?", [batch_id])
            self.dialect.stage_parquet(con, "staged_sales", manifest.sales_path, STAGED_SALES)
            new_dates = [row[0] for row in self._run(con, q.STAGED_DATES_SQL).fetchall()]
            span = [min(new_dates, default=None), max(new_dates, default=None)]
            moved, moved_amount = self._quarantine_warehouse_duplicates(
                con, manifest, policy.reject_duplicates_in_warehouse
            )
            self._run(con, q.INSERT_STAGED_SALES_SQL)
            rejected_rows = pl.read_parquet(manifest.rejected_path, glob=False)
            self.dialect.insert_frame(
                con,
                "sales_rejected",
                rejected_rows.select(
                    pl.lit(batch_id).alias("batch_id"), "source_row", "reasons", "raw"
                ),
            )
            loaded, amount = self._run(con, q.LOADED_TOTALS_SQL, [batch_id]).fetchone()
            rejected = self._scalar(
                con, "SELECT count(*) FROM sales_rejected WHERE batch_id = ?", [batch_id]
            )
            reconcile(
                manifest,
                Observed(
                    rows_loaded=loaded,
                    rows_rejected=rejected,
                    amount_loaded=amount,
                    amount_from_raw=self._amount_from_raw(con, manifest, span),
                    rows_moved=moved,
                    amount_moved=moved_amount,
                ),
            )
            reason_sql = q.reason_counts_sql(self.dialect.binary_collation)
            reason_counts = dict(self._run(con, reason_sql, [batch_id]).fetchall())
            duplicates_of: list[str] = []
            if moved:
                repeated_sql = q.batches_repeated_sql(
                    _derived_order_ids(manifest), self.dialect.null_safe_columns
                )
                duplicates_of = [
                    row[0] for row in self._run(con, repeated_sql, [batch_id]).fetchall()
                ]
            policy.check_reject_share(manifest, rejected, reason_counts, duplicates_of)
            # The staged dates, not those loaded: a superset (rows moved to quarantine as
            # loaded elsewhere may leave a date empty), and a refresh of a date is exact.
            self._refresh_daily_sales(con, old_dates + new_dates)
            outcome = outcome_of(
                manifest,
                BatchStatus.LOADED,
                flow_run_id,
                rows_in=manifest.rows_in,
                rows_loaded=loaded,
                rows_rejected=rejected,
                amount_loaded=amount,
                reason_counts=reason_counts,
            )
            self._run(con, "DELETE FROM batches WHERE batch_id = ?", [batch_id])
            self._run(con, q.INSERT_BATCH_SQL, q.batch_params(outcome))
        return outcome

    def _loaded_already(
        self, con: Any, manifest: BatchManifest, flow_run_id: str | None
    ) -> BatchOutcome | None:
        """The skip of a batch whose content is loaded already, by this batch (another run
        loaded it since our extract looked: loading it again would only churn) or by another
        (the same bytes under a second name would count every row twice); else None."""
        if self._scalar(con, q.HOLDS_CONTENT_SQL, [manifest.batch_id, manifest.sha256]):
            return skipped_outcome(manifest, flow_run_id)
        elsewhere = self._scalar(
            con, CONTENT_LOADED_ELSEWHERE_SQL, [manifest.sha256, manifest.batch_id]
        )
        if elsewhere is not None:
            return skipped_outcome(manifest, flow_run_id, duplicate_of=elsewhere)
        return None

    def _quarantine_warehouse_duplicates(
        self, con: Any, manifest: BatchManifest, enabled: bool
    ) -> tuple[int, Decimal]:
        """Move staged rows identical to rows other batches loaded into `sales_rejected`,
        with their raw record JSON-encoded as validation encodes the rows it rejects.

        Runs inside the load's transaction, after the batch's own old rows are gone and with
        the writers' turn held, so it sees exactly what other batches hold, with no race.
        Leaves the temporary table `repeated` (source_row, total) for the insert's anti-join.
        """
        temp = self.dialect.temp_table_options
        if not enabled:
            self._run(
                con, f"CREATE TEMP TABLE repeated (source_row BIGINT, total DECIMAL(18, 4)){temp}"
            )
            return 0, Decimal(0)
        repeated = q.repeated_rows_sql(_derived_order_ids(manifest), self.dialect.null_safe_columns)
        self._run(con, f"CREATE TEMP TABLE repeated{temp} AS {repeated}", [manifest.batch_id])
        moved, moved_amount = self._run(
            con, "SELECT count(*), coalesce(sum(total), 0) FROM repeated"
        ).fetchone()
        if moved:
            rows = [row[0] for row in self._run(con, "SELECT source_row FROM repeated").fetchall()]
            quarantined = (
                pl.scan_parquet(manifest.raw_path, glob=False)
                .filter(pl.col(SOURCE_ROW).is_in(rows))
                .select(
                    pl.lit(manifest.batch_id).alias("batch_id"),
                    pl.col(SOURCE_ROW).cast(pl.Int64).alias("source_row"),
                    pl.concat_list(pl.lit(str(Reason.DUPLICATE_IN_WAREHOUSE))).alias("reasons"),
                    pl.struct([pl.col(name) for name in manifest.header])
                    .struct.json_encode()
                    .alias("raw"),
                )
                .collect()
            )
            self.dialect.insert_frame(con, "sales_rejected", quarantined)
        return int(moved), Decimal(moved_amount)

    def _amount_from_raw(self, con: Any, manifest: BatchManifest, span: list[Any]) -> Decimal:
        """Money of the loaded rows recomputed by the database from the raw quantity and
        price text, not taken from the transform. `span`: the first and last staged date."""
        columns = (
            StagedColumn("source_row", SOURCE_ROW, "bigint"),
            StagedColumn("quantity", manifest.column_map["quantity"], "text"),
            StagedColumn("unit_price", manifest.column_map["unit_price"], "text"),
        )
        self.dialect.stage_parquet(con, "staged_raw_money", manifest.raw_path, columns)
        return Decimal(self._scalar(con, q.AMOUNT_FROM_RAW_SQL, [manifest.batch_id, *span]))

    def _refresh_daily_sales(self, con: Any, dates: Sequence[Any]) -> None:
        """Recompute the mart for the touched dates only, inside the load's transaction."""
        touched = sorted(set(dates))
        if touched:
            self._run(con, q.DELETE_DAILY_SALES_SQL, [touched])
            self._run(con, q.INSERT_DAILY_SALES_SQL, [touched, touched[0], touched[-1]])

    # --- undo -----------------------------------------------------------------------------

    def _save_previous_version(self, con: Any, batch_id: str, undo_dir: Path) -> None:
        """Copy what the warehouse holds for the batch, inside the load's transaction, so a
        failure after the commit can put it back (see restore_previous_version). The copy is
        written to the staging disk, so a full or read-only one is named as such, not as the
        warehouse's."""
        with named_faults(Place.STAGING, str(undo_dir), batch_id):
            undo_dir.mkdir(parents=True, exist_ok=True)
            for table in q.UNDO_TABLES:
                self.dialect.save_rows(con, table, batch_id, undo_dir)

    def restore_previous_version(self, replaced: BatchOutcome, undo_dir: Path) -> bool:
        """Put back the batch as it was before the load that produced `replaced`, in one
        transaction. Does nothing (returns False) if another load has replaced it since."""
        batch_id = replaced.batch_id
        with self.dialect.write_transaction() as con:
            ours = self._scalar(
                con,
                q.IS_LOAD_OF_SQL,
                [batch_id, replaced.sha256, replaced.finished_at, replaced.flow_run_id],
            )
            if not ours:
                return False  # nothing written: the transaction commits empty
            dates = self._dates_of(con, batch_id)
            for table in q.UNDO_TABLES:
                self._run(con, f"DELETE FROM {table} WHERE batch_id = ?", [batch_id])
                self.dialect.restore_rows(con, table, undo_dir)
            self._refresh_daily_sales(con, dates + self._dates_of(con, batch_id))
        return True

    # --- records --------------------------------------------------------------------------

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """A failed or skipped attempt updates status and times; loaded rows and counts stay."""
        with self.dialect.write_transaction() as con:
            self._record_attempt(con, outcome)

    def _record_attempt(self, con: Any, outcome: BatchOutcome) -> None:
        """Status, error, times and run of the latest attempt; loaded rows and counts stay."""
        self._adopt_earlier_ids(con, outcome.batch_id, outcome.source, always=False)
        if not self._scalar(
            con, "SELECT count(*) FROM batches WHERE batch_id = ?", [outcome.batch_id]
        ):
            self._run(con, q.INSERT_BATCH_SQL, q.batch_params(outcome))
            return
        self._run(con, RECORD_ATTEMPT_SQL, attempt_params(outcome))

    def loaded_duplicates(self, manifest: BatchManifest) -> list[int]:
        """Dry run of the load's cross-batch duplicate check: the source rows it would move."""
        if not self.holds_data():
            return []
        repeated = q.repeated_rows_sql(_derived_order_ids(manifest), self.dialect.null_safe_columns)
        with self.dialect.scratch() as con:
            self.dialect.stage_parquet(con, "staged_sales", manifest.sales_path, STAGED_SALES)
            rows = self._run(
                con, f"SELECT source_row FROM ({repeated}) AS d ORDER BY 1", [manifest.batch_id]
            ).fetchall()
        return [row[0] for row in rows]
