"""The embedded DuckDB warehouse: one file, one writer, every batch load one transaction.

Threads of one process share the database and take turns to write; another process holding the
file is reported as WarehouseBusyError, which the load task retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import duckdb

from salesflow.contract import CONTRACT_VERSION, SALES_COLUMNS, Reason
from salesflow.errors import LoadTimeoutError, UsageError, WarehouseBusyError
from salesflow.manifest import BatchManifest, BatchOutcome, BatchStatus, skipped_outcome
from salesflow.warehouse.base import (
    BATCH_TABLES,
    CONTENT_LOADED_ELSEWHERE_SQL,
    DAILY_SALES_SELECT,
    DELETE_ANOMALIES_SQL,
    EARLIER_IDS_OF_SOURCE_SQL,
    INSERT_ANOMALY_SQL,
    RECORD_ATTEMPT_SQL,
    RECORD_RUN_SQL,
    RENAME_DERIVED_ORDER_IDS_SQL,
    SAVE_WATERMARK_SQL,
    SCHEMA_VERSION,
    TABLE_KEYS,
    LoadPolicy,
    Observed,
    QueryResult,
    SqlQueries,
    anomaly_params,
    attempt_params,
    check_schema_version,
    error_line,
    reconcile,
    repeated_row_condition,
    upgrade_renames,
)

if TYPE_CHECKING:
    from salesflow.anomalies import Anomaly

# The tables holding a batch's rows: saved before a load replaces them, restored on rollback.
UNDO_TABLES = ("sales", "sales_rejected", "batches")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    order_id     VARCHAR NOT NULL,
    order_ts     TIMESTAMP NOT NULL,
    order_date   DATE NOT NULL,
    customer_id  VARCHAR,
    sku          VARCHAR NOT NULL,
    product      VARCHAR,
    category     VARCHAR,
    quantity     BIGINT NOT NULL,
    unit_price   DECIMAL(18, 4) NOT NULL,
    total        DECIMAL(18, 4) NOT NULL,
    ticket_size  VARCHAR NOT NULL,
    month        VARCHAR NOT NULL,
    weekday      VARCHAR NOT NULL,
    region       VARCHAR NOT NULL,
    batch_id     VARCHAR NOT NULL,
    source_row   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sales_rejected (
    batch_id     VARCHAR NOT NULL,
    source_row   BIGINT NOT NULL,
    reasons      VARCHAR[] NOT NULL,
    raw          VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id          VARCHAR NOT NULL,
    source            VARCHAR NOT NULL,
    sha256            VARCHAR,
    rows_in           BIGINT,
    rows_loaded       BIGINT NOT NULL,
    rows_rejected     BIGINT NOT NULL,
    amount_loaded     DECIMAL(38, 4) NOT NULL,
    status            VARCHAR NOT NULL,
    error             VARCHAR,
    contract_version  VARCHAR NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ NOT NULL,
    flow_run_id       VARCHAR
);
CREATE TABLE IF NOT EXISTS runs (
    flow_run_id    VARCHAR NOT NULL,
    flow_name      VARCHAR NOT NULL,
    state          VARCHAR NOT NULL,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ NOT NULL,
    batches        BIGINT NOT NULL,
    loaded         BIGINT NOT NULL,
    skipped        BIGINT NOT NULL,
    failed         BIGINT NOT NULL,
    rows_in        BIGINT NOT NULL,
    rows_loaded    BIGINT NOT NULL,
    rows_rejected  BIGINT NOT NULL,
    amount_loaded  DECIMAL(38, 4) NOT NULL,
    message        VARCHAR
);
CREATE TABLE IF NOT EXISTS daily_sales (
    order_date     DATE NOT NULL,
    region         VARCHAR NOT NULL,
    category       VARCHAR,
    orders         BIGINT NOT NULL,
    units          BIGINT NOT NULL,
    net_revenue    DECIMAL(38, 4) NOT NULL,
    returns_value  DECIMAL(38, 4) NOT NULL
);
CREATE TABLE IF NOT EXISTS watermarks (
    source      VARCHAR PRIMARY KEY,
    watermark   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_version (
    version      INTEGER NOT NULL,
    upgraded_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS anomalies (
    order_date   DATE NOT NULL,
    region       VARCHAR NOT NULL,
    kpi          VARCHAR NOT NULL,
    value        DOUBLE NOT NULL,
    median       DOUBLE NOT NULL,
    mad          DOUBLE NOT NULL,
    robust_z     DOUBLE NOT NULL,
    direction    VARCHAR NOT NULL,
    window_days  INTEGER NOT NULL,
    detected_at  TIMESTAMPTZ NOT NULL,
    flow_run_id  VARCHAR
);
"""

BATCH_COLUMNS = (
    "batch_id, source, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, status, "
    "error, contract_version, started_at, finished_at, flow_run_id"
)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _repeated_rows(derived_order_ids: bool) -> str:
    """Staged rows repeating a row another batch loaded (see base.repeated_row_condition).
    Only the dates the batch spans are searched, so the cost follows the batch, not the
    warehouse. Parameter: the batch id."""
    return (
        "WITH span AS (SELECT min(order_date) AS first, max(order_date) AS last "
        "FROM staged_sales) SELECT s.source_row, s.total FROM staged_sales s SEMI JOIN "
        "(SELECT w.* FROM sales w, span WHERE w.order_date BETWEEN span.first AND span.last "
        f"AND w.batch_id <> ?) w ON {repeated_row_condition(derived_order_ids)}"
    )


def _batches_repeated(derived_order_ids: bool) -> str:
    """The batches holding the rows of `repeated`, for the message. Parameter: the batch id."""
    return (
        "SELECT DISTINCT w.batch_id FROM staged_sales s "
        "JOIN sales w ON w.batch_id <> ? AND w.order_date = s.order_date AND "
        f"{repeated_row_condition(derived_order_ids)} "
        "WHERE s.source_row IN (SELECT source_row FROM repeated) ORDER BY 1 LIMIT 3"
    )


def _rename_batch(con: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    """Give a batch a new id in every table, derived order ids included."""
    for table in BATCH_TABLES:
        con.execute(f"UPDATE {table} SET batch_id = ? WHERE batch_id = ?", [new, old])
    con.execute(RENAME_DERIVED_ORDER_IDS_SQL, [new, new, old])


def _derived_order_ids(manifest: BatchManifest) -> bool:
    """Whether the batch's order ids were derived from its name (its file has none)."""
    return "order_id" not in manifest.column_map


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


LOCK_WAIT_SECONDS = 600.0

QUERY_ONLY_READS = "the query may only read the warehouse"
# How DuckDB says a confined query tried to write or to lift the limits.
_REFUSED_SIGNS = ("configuration has been locked", "read-only mode")


def _open_lock_file(lock_path: Path, required: bool) -> IO[str] | None:
    """The lock file, created if need be; for a reader that may not create it (a read-only
    file or directory) an existing one opened read-only (flock needs no write access), else
    None: no writer can write there either, so there is no one to take turns with."""
    try:
        return lock_path.open("a")
    except OSError:
        if required:
            raise
    try:
        return lock_path.open("r")
    except OSError:
        return None


@contextmanager
def _file_lock(lock_path: Path, wait_seconds: float, required: bool = True) -> Iterator[None]:
    """Serialise every salesflow process's use of one DuckDB file.

    DuckDB lets only one process open a file at a time; without this, overlapping runs would
    fail each other with lock errors instead of taking turns. The lock dies with its process.
    A reader (`required=False`) that cannot open the lock file goes on without it.
    """
    deadline = time.monotonic() + wait_seconds
    opened = _open_lock_file(lock_path, required)
    if opened is None:
        yield
        return
    with opened as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseBusyError(
                        f"{lock_path}: another salesflow process kept the warehouse for "
                        f"{wait_seconds:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float | None) -> Iterator[None]:
    """A statement timeout DuckDB lacks: interrupt the connection when time is up, and again
    every INTERRUPT_REPEAT_SECONDS until the block ends, since an interrupt that arrives
    between two statements is lost and the load would run on past its limit.

    Prefect cannot stop a synchronous task running in a worker thread; the database can.
    """
    if seconds is None:
        yield
        return
    done = threading.Event()

    def interrupt_until_done() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            con.interrupt()
            done.wait(INTERRUPT_REPEAT_SECONDS)

    timer = threading.Thread(target=interrupt_until_done, daemon=True)
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()


INTERRUPT_REPEAT_SECONDS = 0.05


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, never hiding why: after a fatal error (a full disk) DuckDB has already
    ended the transaction, and its "cannot rollback - no transaction is active" would replace
    the real cause in the message the operator sees."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Any:
    row = con.execute(sql, params).fetchone()
    return row[0] if row else None


class DuckDBWarehouse(SqlQueries):
    """A DuckDB file holding the sales, sales_rejected, batches and daily_sales tables."""

    # One write lock per database file for all threads of this process.
    _write_locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, location: str | Path) -> None:
        self.path = Path(location).expanduser().resolve()
        self.location = str(self.path)
        with self._locks_guard:
            self._write_lock = self._write_locks.setdefault(self.location, threading.Lock())
        self._schema_ready = False

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"{self.location}: cannot create its folder ({error.strerror or error})"
            ) from None
        with self._turn(), self._open(read_only=False) as connection:
            yield connection

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for another process (the CLI's query and rejects): it waits
        for a running load to commit instead of failing on DuckDB's file lock."""
        if not self.path.exists():
            raise UsageError(
                f"{self.location}: no warehouse yet; run `salesflow run` or `salesflow demo` first"
            )
        with self._turn(required=False), self._open(read_only=True) as connection:
            yield connection

    def _turn(self, required: bool = True) -> contextlib.AbstractContextManager[None]:
        """The cross-process lock; a reader does without it where it cannot open the lock file
        (a read-only warehouse file or directory, where no writer can write either)."""
        return _file_lock(
            self.path.with_name(self.path.name + ".lock"), LOCK_WAIT_SECONDS, required
        )

    @contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            connection = duckdb.connect(self.location, read_only=read_only)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise WarehouseBusyError(
                    f"{self.location}: warehouse is in use by another process"
                ) from error
            raise UsageError(
                f"{self.location}: cannot open as a DuckDB warehouse ({error})"
            ) from None
        except duckdb.Error as error:
            raise UsageError(
                f"{self.location}: cannot open as a DuckDB warehouse ({error})"
            ) from None
        try:
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The process's one writer: holds the write lock and makes sure the tables exist."""
        with self._write_lock, self._connect() as connection:
            if not self._schema_ready:
                connection.execute(SCHEMA)
                self._schema_ready = True
            yield connection

    def ensure_schema(self) -> None:
        with self._writer():
            pass

    @contextmanager
    def _write_transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The writer's connection inside one transaction: committed when the block ends,
        rolled back if anything in it fails (an interrupt included)."""
        with self._writer() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def load_batch(
        self,
        manifest: BatchManifest,
        flow_run_id: str | None,
        policy: LoadPolicy | None = None,
        undo_dir: Path | None = None,
    ) -> BatchOutcome:
        policy = policy or LoadPolicy()
        batch_id = manifest.batch_id
        with self._writer() as con, _interrupt_after(con, policy.timeout_seconds):
            con.execute("BEGIN TRANSACTION")
            try:
                self._adopt_earlier_ids(con, batch_id, manifest.source, always=True)
                if not manifest.force and self._holds(con, batch_id, manifest.sha256):
                    # Another run loaded this very content since our extract looked: loading
                    # it again would do nothing but churn, so this attempt is a skip.
                    skipped = skipped_outcome(manifest, flow_run_id)
                    self._record_attempt(con, skipped)
                    con.execute("COMMIT")
                    return skipped
                elsewhere = _scalar(con, CONTENT_LOADED_ELSEWHERE_SQL, [manifest.sha256, batch_id])
                if elsewhere is not None and not manifest.force:
                    # The same bytes under a second name would count every row twice.
                    skipped = skipped_outcome(manifest, flow_run_id, duplicate_of=elsewhere)
                    self._record_attempt(con, skipped)
                    con.execute("COMMIT")
                    return skipped
                if undo_dir is not None:
                    self._save_previous_version(con, batch_id, undo_dir)
                old_dates = con.execute(
                    "SELECT DISTINCT order_date FROM sales WHERE batch_id = ?", [batch_id]
                ).fetchall()
                con.execute("DELETE FROM sales WHERE batch_id = ?", [batch_id])
                con.execute("DELETE FROM sales_rejected WHERE batch_id = ?", [batch_id])
                # A view, not a copy: the duplicate check and the insert each read the staged
                # Parquet file directly (copying it first cost a fifth of the load).
                con.execute(
                    "CREATE OR REPLACE TEMP VIEW staged_sales AS SELECT * FROM "
                    f"read_parquet({_sql_string(str(manifest.sales_path))})"
                )
                moved, moved_amount = self._quarantine_warehouse_duplicates(
                    con, manifest, policy.reject_duplicates_in_warehouse
                )
                con.execute(
                    f"INSERT INTO sales SELECT {', '.join(SALES_COLUMNS)} FROM staged_sales "
                    "ANTI JOIN repeated USING (source_row)"
                )
                con.execute(
                    "INSERT INTO sales_rejected SELECT ?, source_row, reasons, raw "
                    f"FROM read_parquet({_sql_string(str(manifest.rejected_path))})",
                    [batch_id],
                )
                loaded, amount, new_dates = con.execute(
                    "SELECT count(*), coalesce(sum(total), 0), list(DISTINCT order_date) "
                    "FROM sales WHERE batch_id = ?",
                    [batch_id],
                ).fetchone() or (0, 0, [])
                rejected = _scalar(
                    con, "SELECT count(*) FROM sales_rejected WHERE batch_id = ?", [batch_id]
                )
                reconcile(
                    manifest,
                    Observed(
                        rows_loaded=loaded,
                        rows_rejected=rejected,
                        amount_loaded=amount,
                        amount_from_raw=self._amount_from_raw(con, manifest),
                        rows_moved=moved,
                        amount_moved=moved_amount,
                    ),
                )
                reason_counts = dict(
                    con.execute(
                        "SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason "
                        "FROM sales_rejected WHERE batch_id = ?) GROUP BY reason "
                        "ORDER BY count(*) DESC, reason",
                        [batch_id],
                    ).fetchall()
                )
                duplicates_of: list[str] = []
                if moved:
                    duplicates_of = [
                        row[0]
                        for row in con.execute(
                            _batches_repeated(_derived_order_ids(manifest)), [batch_id]
                        ).fetchall()
                    ]
                policy.check_reject_share(manifest, rejected, reason_counts, duplicates_of)
                self._refresh_daily_sales(
                    con, [row[0] for row in old_dates] + list(new_dates or [])
                )
                outcome = BatchOutcome(
                    batch_id=batch_id,
                    source=manifest.source,
                    sha256=manifest.sha256,
                    status=BatchStatus.LOADED,
                    rows_in=manifest.rows_in,
                    rows_loaded=loaded,
                    rows_rejected=rejected,
                    amount_loaded=amount,
                    reason_counts=reason_counts,
                    started_at=manifest.started_at,
                    finished_at=datetime.now(UTC),
                    flow_run_id=flow_run_id,
                )
                con.execute("DELETE FROM batches WHERE batch_id = ?", [batch_id])
                self._insert_batch(con, outcome)
                con.execute("COMMIT")
            except duckdb.InterruptException:
                _rollback(con)
                raise LoadTimeoutError(
                    manifest.source,
                    f"load took longer than {policy.timeout_seconds} s and was rolled back; "
                    "raise load_timeout_seconds or split the file",
                ) from None
            except BaseException:
                _rollback(con)
                raise
            finally:
                with contextlib.suppress(duckdb.Error):  # as for the rollback: keep the cause
                    con.execute("DROP VIEW IF EXISTS staged_sales; DROP TABLE IF EXISTS repeated")
        return outcome

    @staticmethod
    def _save_previous_version(
        con: duckdb.DuckDBPyConnection, batch_id: str, undo_dir: Path
    ) -> None:
        """Copy what the warehouse holds for the batch, inside the load's transaction, so a
        failure after the commit can put it back (see restore_previous_version)."""
        undo_dir.mkdir(parents=True, exist_ok=True)
        for table in UNDO_TABLES:
            target = _sql_string(str(undo_dir / f"{table}.parquet"))
            con.execute(
                f"COPY (SELECT * FROM {table} WHERE batch_id = {_sql_string(batch_id)}) "
                f"TO {target} (FORMAT parquet)"
            )

    def restore_previous_version(self, replaced: BatchOutcome, undo_dir: Path) -> bool:
        """Put back the batch as it was before the load that produced `replaced`, in one
        transaction. Does nothing (returns False) if another load has replaced it since."""
        batch_id = replaced.batch_id
        undo = {table: _sql_string(str(undo_dir / f"{table}.parquet")) for table in UNDO_TABLES}
        with self._write_transaction() as con:
            ours = _scalar(
                con,
                "SELECT count(*) FROM batches WHERE batch_id = ? AND status = 'loaded' "
                "AND sha256 IS NOT DISTINCT FROM ? AND finished_at = ? "
                "AND flow_run_id IS NOT DISTINCT FROM ?",
                [batch_id, replaced.sha256, replaced.finished_at, replaced.flow_run_id],
            )
            if not ours:
                return False  # nothing written: the transaction commits empty
            dates = con.execute(
                "SELECT DISTINCT order_date FROM sales WHERE batch_id = ? UNION "
                f"SELECT DISTINCT order_date FROM read_parquet({undo['sales']})",
                [batch_id],
            ).fetchall()
            for table in UNDO_TABLES:
                con.execute(f"DELETE FROM {table} WHERE batch_id = ?", [batch_id])
                con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({undo[table]})")
            self._refresh_daily_sales(con, [row[0] for row in dates])
        return True

    @staticmethod
    def _holds(con: duckdb.DuckDBPyConnection, batch_id: str, sha256: str) -> bool:
        return bool(
            _scalar(
                con,
                "SELECT count(*) FROM batches WHERE batch_id = ? AND sha256 = ? "
                "AND rows_in IS NOT NULL AND status IN ('loaded', 'skipped')",
                [batch_id, sha256],
            )
        )

    @staticmethod
    def _quarantine_warehouse_duplicates(
        con: duckdb.DuckDBPyConnection, manifest: BatchManifest, enabled: bool
    ) -> tuple[int, Any]:
        """Move staged rows identical to rows other batches loaded into `sales_rejected`.

        Runs inside the load's transaction, after the batch's own old rows are gone, so it sees
        exactly what other batches hold; commits are serialised, so there is no race.
        Leaves the TEMP table `repeated` (source_row, total) for the caller's anti-join.
        """
        if not enabled:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE repeated (source_row BIGINT, total DECIMAL(18,4))"
            )
            return 0, 0
        con.execute(
            "CREATE OR REPLACE TEMP TABLE repeated AS "
            + _repeated_rows(_derived_order_ids(manifest)),
            [manifest.batch_id],
        )
        moved, moved_amount = con.execute(
            "SELECT count(*), coalesce(sum(total), 0) FROM repeated"
        ).fetchone() or (0, 0)
        if moved:
            record = ", ".join(
                f"{_sql_string(name)}: r.{_identifier(name)}" for name in manifest.header
            )
            con.execute(
                "INSERT INTO sales_rejected SELECT ?, r.__source_row, "
                f"[{_sql_string(str(Reason.DUPLICATE_IN_WAREHOUSE))}], to_json({{{record}}}) "
                f"FROM read_parquet({_sql_string(str(manifest.raw_path))}) r "
                "SEMI JOIN repeated ON repeated.source_row = r.__source_row",
                [manifest.batch_id],
            )
        return moved, moved_amount

    @staticmethod
    def _amount_from_raw(con: duckdb.DuckDBPyConnection, manifest: BatchManifest) -> Any:
        """Money of the loaded rows recomputed by DuckDB from the raw text, not from Polars."""
        quantity = _identifier(manifest.column_map["quantity"])
        price = _identifier(manifest.column_map["unit_price"])
        return _scalar(
            con,
            f"SELECT coalesce(sum(CAST(trim(r.{quantity}) AS DECIMAL(18, 0)) "
            f"* CAST(trim(r.{price}) AS DECIMAL(18, 4))), 0) "
            f"FROM read_parquet({_sql_string(str(manifest.raw_path))}) r "
            "SEMI JOIN (SELECT source_row FROM sales WHERE batch_id = ?) s "
            "ON s.source_row = r.__source_row",
            [manifest.batch_id],
        )

    @staticmethod
    def _refresh_daily_sales(con: duckdb.DuckDBPyConnection, dates: list[Any]) -> None:
        """Recompute the mart for the touched dates only, inside the load's transaction."""
        touched = sorted(set(dates))
        if not touched:
            return
        con.execute("DELETE FROM daily_sales WHERE list_contains(?::DATE[], order_date)", [touched])
        con.execute(
            f"INSERT INTO daily_sales {DAILY_SALES_SELECT} "
            "WHERE list_contains(?::DATE[], order_date) GROUP BY order_date, region, category",
            [touched],
        )

    @staticmethod
    def _insert_batch(con: duckdb.DuckDBPyConnection, outcome: BatchOutcome) -> None:
        con.execute(
            f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                outcome.batch_id,
                outcome.source,
                outcome.sha256,
                outcome.rows_in,
                outcome.rows_loaded,
                outcome.rows_rejected,
                outcome.amount_loaded,
                str(outcome.status),
                outcome.error,
                CONTRACT_VERSION,
                outcome.started_at,
                outcome.finished_at,
                outcome.flow_run_id,
            ],
        )

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """A failed or skipped attempt updates status and times; loaded rows and counts stay."""
        with self._write_transaction() as con:
            self._record_attempt(con, outcome)

    def _record_attempt(self, con: duckdb.DuckDBPyConnection, outcome: BatchOutcome) -> None:
        """Status, error, times and run of the latest attempt; loaded rows and counts stay."""
        self._adopt_earlier_ids(con, outcome.batch_id, outcome.source, always=False)
        exists = _scalar(con, "SELECT count(*) FROM batches WHERE batch_id = ?", [outcome.batch_id])
        if not exists:
            self._insert_batch(con, outcome)
            return
        con.execute(RECORD_ATTEMPT_SQL, attempt_params(outcome))

    @staticmethod
    def _adopt_earlier_ids(
        con: duckdb.DuckDBPyConnection, batch_id: str, source: str, always: bool
    ) -> None:
        """Rename the batches recorded for this source under another id (an older
        salesflow's bare file names, another landing root) to its id, so one source is one
        batch. A load always does (it then replaces all of them); recording an attempt only
        when the id is not taken yet, so `batches` never holds an id twice."""
        earlier = [
            row[0] for row in con.execute(EARLIER_IDS_OF_SOURCE_SQL, [source, batch_id]).fetchall()
        ]
        if not earlier:
            return
        if not always and _scalar(
            con, "SELECT count(*) FROM batches WHERE batch_id = ?", [batch_id]
        ):
            return
        for old in earlier:
            _rename_batch(con, old, batch_id)

    def upgrade(self, landing_root: Path | None) -> None:
        """Bring an older warehouse to SCHEMA_VERSION, in one transaction.

        1 -> 2: batch ids were bare file names; each batch whose source file is still there
        takes its id from its path (sources.files.batch_identity under `landing_root`). A
        batch whose file is gone keeps its id until its source is loaded again, when the load
        adopts it by its recorded source. A newer warehouse is refused, not rewritten.
        """
        with self._write_transaction() as con:
            version = _scalar(con, "SELECT max(version) FROM schema_version", [])
            if not check_schema_version(self.location, version):
                return
            recorded = con.execute("SELECT batch_id, source FROM batches").fetchall()
            for old, new in upgrade_renames(recorded, landing_root):
                _rename_batch(con, old, new)
            con.execute("DELETE FROM schema_version")
            con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION])

    def record_run(
        self,
        flow_run_id: str,
        flow_name: str,
        state: str,
        started_at: datetime | None,
        message: str | None,
    ) -> None:
        """Write (or rewrite) a flow run's record, its counts taken from its batches."""
        with self._write_transaction() as con:
            con.execute("DELETE FROM runs WHERE flow_run_id = ?", [flow_run_id])
            con.execute(
                RECORD_RUN_SQL, [flow_run_id, flow_name, state, started_at, message, flow_run_id]
            )

    def save_watermark(self, source: str, watermark: datetime) -> None:
        """Record that every change of `source` up to `watermark` is loaded."""
        with self._writer() as con:
            con.execute(SAVE_WATERMARK_SQL, [source, watermark])

    def replace_anomalies(self, dates: Sequence[date], anomalies: Sequence[Anomaly]) -> None:
        """The checked days' anomalies, replaced in one transaction."""
        with self._write_transaction() as con:
            con.execute(DELETE_ANOMALIES_SQL, [sorted(set(dates))])
            if anomalies:
                con.executemany(INSERT_ANOMALY_SQL, [anomaly_params(a) for a in anomalies])

    def loaded_duplicates(self, manifest: BatchManifest) -> list[int]:
        """Dry run of the load's cross-batch duplicate check: the source rows it would move."""
        if not self.path.exists():
            return []
        with self._connect() as con:
            tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
            if "sales" not in tables:
                return []
            con.execute(
                "CREATE TEMP TABLE staged_sales AS SELECT * FROM "
                f"read_parquet({_sql_string(str(manifest.sales_path))})"
            )
            rows = con.execute(
                f"SELECT source_row FROM ({_repeated_rows(_derived_order_ids(manifest))}) "
                "ORDER BY 1",
                [manifest.batch_id],
            ).fetchall()
        return [row[0] for row in rows]

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one of salesflow's read queries: on a read-only connection once the file
        exists, so `rejects`, `report` and `status` read a warehouse they cannot write."""
        opened = self.reader() if self.path.exists() else self._connect()
        with opened as con:
            return con.execute(sql, params or []).fetchall()

    def holds_data(self) -> bool:
        """The file exists and has the `batches` table; a missing file is not created."""
        if not self.path.exists():
            return False
        with self.reader() as con:
            row = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name = 'batches'"
            ).fetchone()
        return bool(row and row[0])

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's query, which may only read the warehouse: one statement, on a read-only
        connection (see `reader`) that, once the file is open, may touch no other file, no
        extension and no network (`enable_external_access = false`) and change no setting
        (`lock_configuration = true`; SET, RESET and PRAGMA cannot lift the limits). DuckDB
        spills to a private temporary folder, removed afterwards, not next to the warehouse."""
        # The folder outlives the connection, which may hold files in it until it closes.
        with tempfile.TemporaryDirectory(prefix="salesflow-query-") as spill, self.reader() as con:
            try:
                count = len(con.extract_statements(sql))
                if count == 0:
                    raise UsageError("empty query: give a SQL statement")
                if count > 1:
                    raise UsageError(
                        f"query failed: {QUERY_ONLY_READS}; give one statement, not {count}"
                    )
                for setting in (
                    f"temp_directory = {_sql_string(spill)}",
                    "python_enable_replacements = false",  # no scans of Python variables
                    "enable_external_access = false",
                    "lock_configuration = true",
                ):
                    con.execute(f"SET {setting}")
                cursor = con.execute(sql)
                columns = [column[0] for column in cursor.description or []]
                rows = cursor.fetchmany(limit) if cursor.description else []
            except duckdb.Error as error:
                if isinstance(error, duckdb.PermissionException) or any(
                    sign in str(error) for sign in _REFUSED_SIGNS
                ):
                    raise UsageError(
                        f"query failed: {QUERY_ONLY_READS} ({error_line(error)})"
                    ) from None
                raise UsageError(f"query failed: {error_line(error)}") from None
        return QueryResult(columns, rows)

    def table_checksum(self, table: str) -> str:
        if table not in TABLE_KEYS:
            raise ValueError(f"no checksum defined for table {table!r}")
        rows = self.fetch(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(CAST(t AS VARCHAR), chr(10) "
            f"ORDER BY {TABLE_KEYS[table]})), '') FROM {table} AS t"
        )
        return str(rows[0][0])
