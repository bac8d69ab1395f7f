"""The PostgreSQL warehouse: the same tables and the same one-transaction batch load as DuckDB,
for a warehouse that several machines and analysts share.

Bulk rows go in with COPY into a temporary table, then INSERT ... SELECT, all inside the load's
transaction. Writers take turns on an advisory lock derived from the schema, the analogue of
the DuckDB file lock; readers never wait (MVCC shows them the last commit).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl
import psycopg
from psycopg import sql

from salesflow.contract import CONTRACT_VERSION, SALES_COLUMNS, SOURCE_ROW, Reason
from salesflow.errors import (
    LoadTimeoutError,
    UsageError,
    WarehouseBusyError,
    WarehouseUnavailableError,
)
from salesflow.manifest import BatchManifest, BatchOutcome, BatchStatus, skipped_outcome
from salesflow.pg_url import PostgresUrl, connect_failure, first_line, is_postgres_url
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

DEFAULT_SCHEMA = "salesflow"
LOCK_WAIT_SECONDS = 600.0
COPY_ROWS_PER_CHUNK = 50_000

# The tables holding a batch's rows: saved before a load replaces them, restored on rollback.
UNDO_TABLES = ("sales", "sales_rejected", "batches")

# `{s}` is the warehouse schema, filled in with sql.Identifier.
SCHEMA_DDL = """
CREATE TABLE IF NOT EXISTS {s}.sales (
    order_id     text NOT NULL,
    order_ts     timestamp NOT NULL,
    order_date   date NOT NULL,
    customer_id  text,
    sku          text NOT NULL,
    product      text,
    category     text,
    quantity     bigint NOT NULL,
    unit_price   numeric(18, 4) NOT NULL,
    total        numeric(18, 4) NOT NULL,
    ticket_size  text NOT NULL,
    month        text NOT NULL,
    weekday      text NOT NULL,
    region       text NOT NULL,
    batch_id     text NOT NULL,
    source_row   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS sales_batch_id ON {s}.sales (batch_id);
CREATE INDEX IF NOT EXISTS sales_order_date ON {s}.sales (order_date);
CREATE TABLE IF NOT EXISTS {s}.sales_rejected (
    batch_id     text NOT NULL,
    source_row   bigint NOT NULL,
    reasons      text[] NOT NULL,
    raw          text NOT NULL
);
CREATE INDEX IF NOT EXISTS sales_rejected_batch_id ON {s}.sales_rejected (batch_id);
CREATE TABLE IF NOT EXISTS {s}.batches (
    batch_id          text PRIMARY KEY,
    source            text NOT NULL,
    sha256            text,
    rows_in           bigint,
    rows_loaded       bigint NOT NULL,
    rows_rejected     bigint NOT NULL,
    amount_loaded     numeric(38, 4) NOT NULL,
    status            text NOT NULL,
    error             text,
    contract_version  text NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    flow_run_id       text
);
CREATE TABLE IF NOT EXISTS {s}.runs (
    flow_run_id    text PRIMARY KEY,
    flow_name      text NOT NULL,
    state          text NOT NULL,
    started_at     timestamptz,
    finished_at    timestamptz NOT NULL,
    batches        bigint NOT NULL,
    loaded         bigint NOT NULL,
    skipped        bigint NOT NULL,
    failed         bigint NOT NULL,
    rows_in        bigint NOT NULL,
    rows_loaded    bigint NOT NULL,
    rows_rejected  bigint NOT NULL,
    amount_loaded  numeric(38, 4) NOT NULL,
    message        text
);
CREATE TABLE IF NOT EXISTS {s}.daily_sales (
    order_date     date NOT NULL,
    region         text NOT NULL,
    category       text,
    orders         bigint NOT NULL,
    units          bigint NOT NULL,
    net_revenue    numeric(38, 4) NOT NULL,
    returns_value  numeric(38, 4) NOT NULL
);
CREATE INDEX IF NOT EXISTS daily_sales_order_date ON {s}.daily_sales (order_date);
CREATE TABLE IF NOT EXISTS {s}.watermarks (
    source      text PRIMARY KEY,
    watermark   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.anomalies (
    order_date   date NOT NULL,
    region       text NOT NULL,
    kpi          text NOT NULL,
    value        double precision NOT NULL,
    median       double precision NOT NULL,
    mad          double precision NOT NULL,
    robust_z     double precision NOT NULL,
    direction    text NOT NULL,
    window_days  integer NOT NULL,
    detected_at  timestamptz NOT NULL,
    flow_run_id  text
);
CREATE TABLE IF NOT EXISTS {s}.schema_version (
    version      integer NOT NULL,
    upgraded_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_order_date ON {s}.anomalies (order_date);
-- DuckDB's list_contains, so queries salesflow (and analysts) write for DuckDB run here too.
CREATE OR REPLACE FUNCTION {s}.list_contains(anyarray, anyelement) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $2 = ANY($1)';
"""

BATCH_COLUMNS = (
    "batch_id, source, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, status, "
    "error, contract_version, started_at, finished_at, flow_run_id"
)

# Columns of `sales` that are NOT NULL compare with `=`, so PostgreSQL can hash-join on them;
# the nullable ones with IS NOT DISTINCT FROM. Together: identical in every contract field,
# exactly the rule of DuckDB's _repeated_rows.
_NULLABLE = ("customer_id", "product", "category")


def _repeated_rows(derived_order_ids: bool) -> str:
    """Staged rows repeating a row another batch loaded, in the dates the batch spans (see
    base.repeated_row_condition). Parameter: the batch id."""
    return (
        "SELECT s.source_row, s.total FROM staged_sales s WHERE EXISTS (SELECT 1 FROM {s}.sales w "
        "WHERE w.order_date BETWEEN (SELECT min(order_date) FROM staged_sales) "
        "AND (SELECT max(order_date) FROM staged_sales) AND w.batch_id <> %s AND "
        f"{repeated_row_condition(derived_order_ids, _NULLABLE)})"
    )


def _batches_repeated(derived_order_ids: bool) -> str:
    """The batches holding the rows of `repeated`, for the message. Parameter: the batch id."""
    same_row = repeated_row_condition(derived_order_ids, _NULLABLE)
    return (
        "SELECT DISTINCT w.batch_id FROM staged_sales s JOIN {s}.sales w ON w.batch_id <> %s "
        f"AND w.order_date = s.order_date AND {same_row} "
        "WHERE s.source_row IN (SELECT source_row FROM repeated) ORDER BY 1 LIMIT 3"
    )


def _derived_order_ids(manifest: BatchManifest) -> bool:
    """Whether the batch's order ids were derived from its name (its file has none)."""
    return "order_id" not in manifest.column_map


# Quoted strings, quoted identifiers and comments, where a `?` is not a placeholder.
_QUOTED_OR_PLACEHOLDER = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|%", re.S
)


def is_postgres_location(location: str) -> bool:
    """Whether `location` names a PostgreSQL warehouse (a postgresql:// or postgres:// URL)."""
    return is_postgres_url(location)


def _psycopg_placeholders(query: str) -> str:
    """DuckDB-style `?` placeholders as psycopg's `%s` (a `?` in quoted text or a comment is
    text, and every `%` is escaped), so the queries the flow writes against the Warehouse
    interface run on both warehouses."""

    def convert(match: re.Match[str]) -> str:
        token = match.group()
        return "%s" if token == "?" else token.replace("%", "%%")

    return _QUOTED_OR_PLACEHOLDER.sub(convert, query)


def _pg_array(column: str) -> pl.Expr:
    """A list of text as a PostgreSQL array literal, for COPY into a text[] column."""
    element = (
        pl.element()
        .str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all('"', '\\"', literal=True)
    )
    quoted = pl.col(column).list.eval(pl.concat_str(pl.lit('"'), element, pl.lit('"')))
    return pl.concat_str(pl.lit("{"), quoted.list.join(","), pl.lit("}"))


def _copy_frame(cursor: psycopg.Cursor[Any], target: sql.Composable, frame: pl.DataFrame) -> None:
    """COPY a data frame in as CSV chunks: nulls unquoted-empty, empty text quoted, which is
    exactly how PostgreSQL's CSV format tells them apart."""
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(target)
    with cursor.copy(statement) as copy:
        for chunk in frame.iter_slices(COPY_ROWS_PER_CHUNK):
            buffer = io.BytesIO()
            chunk.write_csv(buffer, include_header=False)
            copy.write(buffer.getvalue())


class PostgresWarehouse(SqlQueries):
    """A PostgreSQL schema holding the sales, sales_rejected, batches, runs and daily_sales
    tables; `location` is its URL without any password, safe to pass around and log."""

    # Locations whose tables this process has created or seen, to skip the DDL afterwards.
    _ready: ClassVar[set[str]] = set()

    def __init__(self, location: str) -> None:
        url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        self.url = url
        self.schema = url.schema
        self.location = url.location
        digest = hashlib.sha256(f"salesflow:{self.schema}".encode()).digest()
        # The advisory lock every writer of this schema takes, in every process and machine
        # (advisory locks are per database, so the schema is all the key needs).
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._schema = sql.Identifier(self.schema)

    def __repr__(self) -> str:
        return f"PostgresWarehouse({self.location!r})"

    # --- connections ----------------------------------------------------------------------

    def _sql(self, template: str, **parts: sql.Composable) -> sql.Composed:
        """A statement with `{s}` as the quoted schema (and other quoted parts)."""
        return sql.SQL(template).format(s=self._schema, **parts)

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A new connection whose search_path is the warehouse schema, so callers' SQL names
        tables plainly. The password comes from the URL given in this process, or from libpq
        (PGPASSWORD, ~/.pgpass)."""
        try:
            connection = self.url.connect("salesflow")
        except psycopg.OperationalError as error:
            raise self._connect_failure(error) from None
        with self._database_errors(), connection:
            connection.execute(self._sql("SET search_path TO {s}"))
            connection.commit()
            connection.read_only = read_only
            yield connection

    def _connect_failure(self, error: psycopg.OperationalError) -> Exception:
        """Wrong settings are the user's to fix; anything else may pass, so it is retried."""
        return connect_failure(self.location, error, WarehouseUnavailableError)

    @contextmanager
    def _database_errors(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[None]:
        """Map PostgreSQL's failures onto salesflow's: a timeout fails the batch, a lost
        connection or a held lock is transient (the load task retries it), a missing
        privilege is a configuration problem."""
        try:
            yield
        except psycopg.errors.QueryCanceled as error:
            if source is not None and timeout_seconds is not None:
                raise LoadTimeoutError(
                    source,
                    f"load took longer than {timeout_seconds} s and was rolled back; "
                    "raise load_timeout_seconds or split the file",
                ) from None
            raise WarehouseUnavailableError(
                f"{self.location}: statement cancelled ({first_line(error)})"
            ) from error
        except psycopg.errors.LockNotAvailable:
            raise WarehouseBusyError(
                f"{self.location}: another salesflow process kept the warehouse for "
                f"{LOCK_WAIT_SECONDS:.0f} s"
            ) from None
        except psycopg.OperationalError as error:
            raise WarehouseUnavailableError(
                f"{self.location}: lost the connection to PostgreSQL ({first_line(error)})"
            ) from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise UsageError(f"{self.location}: {first_line(error)}") from None

    @contextmanager
    def _write_transaction(
        self, source: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """One transaction holding the schema's advisory lock, so writers take turns. The time
        limit starts once the lock is held, as DuckDB's does. The tables are created first, in
        a transaction of their own, if this process has not seen them yet: a failed first load
        still leaves them for its failure record."""
        with self._connect() as con, self._database_errors(source, timeout_seconds):
            if self.location not in self._ready:
                with con.transaction():
                    self._take_turn(con)
                    self._create_schema(con)
                self._ready.add(self.location)
            with con.transaction():
                self._take_turn(con)
                if timeout_seconds is not None:
                    con.execute(
                        "SELECT set_config('statement_timeout', %s, true)", [_ms(timeout_seconds)]
                    )
                yield con

    def _take_turn(self, con: psycopg.Connection[Any]) -> None:
        """Wait for the schema's advisory lock, held until the transaction ends (or its
        session dies): every salesflow writer on any machine queues on it."""
        con.execute("SELECT set_config('lock_timeout', %s, true)", [_ms(LOCK_WAIT_SECONDS)])
        con.execute("SELECT pg_advisory_xact_lock(%s)", [self.lock_key])
        con.execute("SET LOCAL lock_timeout TO DEFAULT")

    def _create_schema(self, con: psycopg.Connection[Any]) -> None:
        exists = con.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
        ).fetchone()
        if not exists:  # CREATE SCHEMA needs a privilege that using an existing one does not
            con.execute(self._sql("CREATE SCHEMA {s}"))
        con.execute(self._sql(SCHEMA_DDL))

    def ensure_schema(self) -> None:
        """Create the schema, tables and indexes that are missing, whatever this process saw
        before: the flow calls it once per run, so a bad location fails the run early."""
        self._ready.discard(self.location)
        with self._write_transaction():
            pass

    # --- loading --------------------------------------------------------------------------

    def load_batch(
        self,
        manifest: BatchManifest,
        flow_run_id: str | None,
        policy: LoadPolicy | None = None,
        undo_dir: Path | None = None,
    ) -> BatchOutcome:
        policy = policy or LoadPolicy()
        batch_id = manifest.batch_id
        with self._write_transaction(manifest.source, policy.timeout_seconds) as con:
            self._adopt_earlier_ids(con, batch_id, manifest.source, always=True)
            if not manifest.force and self._holds(con, batch_id, manifest.sha256):
                # Another run loaded this very content since our extract looked: loading it
                # again would do nothing but churn, so this attempt is a skip.
                skipped = skipped_outcome(manifest, flow_run_id)
                self._record_attempt(con, skipped)
                return skipped
            found = con.execute(
                _psycopg_placeholders(CONTENT_LOADED_ELSEWHERE_SQL), [manifest.sha256, batch_id]
            ).fetchone()
            if found and found[0] is not None and not manifest.force:
                # The same bytes under a second name would count every row twice.
                skipped = skipped_outcome(manifest, flow_run_id, duplicate_of=found[0])
                self._record_attempt(con, skipped)
                return skipped
            if undo_dir is not None:
                self._save_previous_version(con, batch_id, undo_dir)
            old_dates = self._dates_of(con, batch_id)
            con.execute(self._sql("DELETE FROM {s}.sales WHERE batch_id = %s"), [batch_id])
            con.execute(self._sql("DELETE FROM {s}.sales_rejected WHERE batch_id = %s"), [batch_id])
            self._stage_sales(con, manifest)
            moved, moved_amount = self._quarantine_warehouse_duplicates(
                con, manifest, policy.reject_duplicates_in_warehouse
            )
            con.execute(
                self._sql(
                    "INSERT INTO {s}.sales SELECT * FROM staged_sales s WHERE NOT EXISTS "
                    "(SELECT 1 FROM repeated r WHERE r.source_row = s.source_row)"
                )
            )
            rejected_rows = pl.read_parquet(manifest.rejected_path, glob=False)
            with con.cursor() as cursor:
                _copy_frame(
                    cursor,
                    self._sql("{s}.sales_rejected"),
                    rejected_rows.select(
                        pl.lit(batch_id).alias("batch_id"),
                        "source_row",
                        _pg_array("reasons").alias("reasons"),
                        "raw",
                    ),
                )
            loaded, amount = con.execute(
                self._sql(
                    "SELECT count(*), coalesce(sum(total), 0) FROM {s}.sales WHERE batch_id = %s"
                ),
                [batch_id],
            ).fetchone() or (0, Decimal(0))
            rejected = self._count(con, "sales_rejected", batch_id)
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
            reason_counts: dict[str, int] = dict(
                con.execute(
                    self._sql(
                        "SELECT reason, count(*) FROM {s}.sales_rejected, unnest(reasons) AS "
                        "reason WHERE batch_id = %s GROUP BY reason "
                        'ORDER BY count(*) DESC, reason COLLATE "C"'
                    ),
                    [batch_id],
                ).fetchall()
            )
            duplicates_of: list[str] = []
            if moved:
                duplicates_of = [
                    row[0]
                    for row in con.execute(
                        self._sql(_batches_repeated(_derived_order_ids(manifest))), [batch_id]
                    ).fetchall()
                ]
            policy.check_reject_share(manifest, rejected, reason_counts, duplicates_of)
            self._refresh_daily_sales(con, old_dates + self._dates_of(con, batch_id))
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
            con.execute(self._sql("DELETE FROM {s}.batches WHERE batch_id = %s"), [batch_id])
            self._insert_batch(con, outcome)
        return outcome

    def _holds(self, con: psycopg.Connection[Any], batch_id: str, sha256: str) -> bool:
        row = con.execute(
            self._sql(
                "SELECT count(*) FROM {s}.batches WHERE batch_id = %s AND sha256 = %s "
                "AND rows_in IS NOT NULL AND status IN ('loaded', 'skipped')"
            ),
            [batch_id, sha256],
        ).fetchone()
        return bool(row and row[0])

    def _count(self, con: psycopg.Connection[Any], table: str, batch_id: str) -> int:
        row = con.execute(
            self._sql("SELECT count(*) FROM {s}.{t} WHERE batch_id = %s", t=sql.Identifier(table)),
            [batch_id],
        ).fetchone()
        return int(row[0]) if row else 0

    def _dates_of(self, con: psycopg.Connection[Any], batch_id: str) -> list[Any]:
        rows = con.execute(
            self._sql("SELECT DISTINCT order_date FROM {s}.sales WHERE batch_id = %s"), [batch_id]
        ).fetchall()
        return [row[0] for row in rows]

    def _stage_sales(self, con: psycopg.Connection[Any], manifest: BatchManifest) -> None:
        """COPY the transformed rows into a temporary table shaped like `sales`, dropped at
        commit: the duplicate check and the insert read it inside the transaction."""
        con.execute(self._sql("CREATE TEMP TABLE staged_sales (LIKE {s}.sales) ON COMMIT DROP"))
        sales = pl.read_parquet(manifest.sales_path, columns=list(SALES_COLUMNS), glob=False)
        with con.cursor() as cursor:
            _copy_frame(cursor, sql.Identifier("staged_sales"), sales)
        con.execute("ANALYZE staged_sales")

    def _quarantine_warehouse_duplicates(
        self, con: psycopg.Connection[Any], manifest: BatchManifest, enabled: bool
    ) -> tuple[int, Decimal]:
        """Move staged rows identical to rows other batches loaded into `sales_rejected`.

        Runs inside the load's transaction, after the batch's own old rows are gone and under
        the advisory lock, so it sees exactly what other batches hold, with no race. Leaves
        the temporary table `repeated` (source_row, total) for the caller's anti-join.
        """
        if not enabled:
            con.execute(
                "CREATE TEMP TABLE repeated (source_row bigint, total numeric(18, 4)) "
                "ON COMMIT DROP"
            )
            return 0, Decimal(0)
        con.execute(
            self._sql(
                "CREATE TEMP TABLE repeated ON COMMIT DROP AS "
                + _repeated_rows(_derived_order_ids(manifest))
            ),
            [manifest.batch_id],
        )
        moved, moved_amount = con.execute(
            "SELECT count(*), coalesce(sum(total), 0) FROM repeated"
        ).fetchone() or (0, Decimal(0))
        if moved:
            rows = [row[0] for row in con.execute("SELECT source_row FROM repeated").fetchall()]
            # The record as read, JSON-encoded as validation encodes the rows it rejects.
            quarantined = (
                pl.scan_parquet(manifest.raw_path, glob=False)
                .filter(pl.col(SOURCE_ROW).is_in(rows))
                .select(
                    pl.lit(manifest.batch_id).alias("batch_id"),
                    pl.col(SOURCE_ROW).alias("source_row"),
                    pl.lit(f"{{{Reason.DUPLICATE_IN_WAREHOUSE}}}").alias("reasons"),
                    pl.struct([pl.col(name) for name in manifest.header])
                    .struct.json_encode()
                    .alias("raw"),
                )
                .collect()
            )
            with con.cursor() as cursor:
                _copy_frame(cursor, self._sql("{s}.sales_rejected"), quarantined)
        return int(moved), Decimal(moved_amount)

    def _amount_from_raw(self, con: psycopg.Connection[Any], manifest: BatchManifest) -> Decimal:
        """Money of the loaded rows recomputed by PostgreSQL from the raw text, not from
        Polars: the raw quantity and price of the staged rows are copied in as text, and only
        rows now in `sales` count."""
        raw = (
            pl.scan_parquet(manifest.raw_path, glob=False)
            .with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))
            .join(
                pl.scan_parquet(manifest.sales_path, glob=False).select(
                    pl.col("source_row").cast(pl.Int64)
                ),
                left_on=SOURCE_ROW,
                right_on="source_row",
                how="semi",
            )
            .select(
                pl.col(SOURCE_ROW),
                pl.col(manifest.column_map["quantity"]),
                pl.col(manifest.column_map["unit_price"]),
            )
            .collect()
        )
        con.execute(
            "CREATE TEMP TABLE staged_raw_money (source_row bigint, quantity text, "
            "unit_price text) ON COMMIT DROP"
        )
        with con.cursor() as cursor:
            _copy_frame(cursor, sql.Identifier("staged_raw_money"), raw)
        row = con.execute(
            self._sql(
                "SELECT coalesce(sum(CAST(r.quantity AS numeric(18, 0)) "
                "* CAST(r.unit_price AS numeric(18, 4))), 0) FROM staged_raw_money r "
                "JOIN {s}.sales s ON s.batch_id = %s AND s.source_row = r.source_row"
            ),
            [manifest.batch_id],
        ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    def _refresh_daily_sales(self, con: psycopg.Connection[Any], dates: Sequence[Any]) -> None:
        """Recompute the mart for the touched dates only, inside the load's transaction."""
        touched = sorted(set(dates))
        if not touched:
            return
        con.execute(
            self._sql("DELETE FROM {s}.daily_sales WHERE order_date = ANY(%s::date[])"), [touched]
        )
        # DAILY_SALES_SELECT reads `sales` through the connection's search_path: the schema.
        con.execute(
            self._sql(
                "INSERT INTO {s}.daily_sales {select} WHERE order_date = ANY(%s::date[]) "
                "GROUP BY order_date, region, category",
                select=sql.SQL(DAILY_SALES_SELECT),
            ),
            [touched],
        )

    def _insert_batch(self, con: psycopg.Connection[Any], outcome: BatchOutcome) -> None:
        con.execute(
            self._sql(
                f"INSERT INTO {{s}}.batches ({BATCH_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ),
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

    # --- undo -----------------------------------------------------------------------------

    def _save_previous_version(
        self, con: psycopg.Connection[Any], batch_id: str, undo_dir: Path
    ) -> None:
        """Copy what the warehouse holds for the batch, inside the load's transaction, in
        PostgreSQL's binary COPY format: it round-trips every type exactly."""
        undo_dir.mkdir(parents=True, exist_ok=True)
        with con.cursor() as cursor:
            for table in UNDO_TABLES:
                statement = self._sql(
                    "COPY (SELECT * FROM {s}.{t} WHERE batch_id = {b}) TO STDOUT (FORMAT binary)",
                    t=sql.Identifier(table),
                    b=sql.Literal(batch_id),
                )
                with (
                    (undo_dir / f"{table}.pgcopy").open("wb") as target,
                    cursor.copy(statement) as copy,
                ):
                    for data in copy:
                        target.write(data)

    def restore_previous_version(self, replaced: BatchOutcome, undo_dir: Path) -> bool:
        """Put back the batch as it was before the load that produced `replaced`, in one
        transaction. Does nothing (returns False) if another load has replaced it since."""
        batch_id = replaced.batch_id
        with self._write_transaction() as con:
            ours = con.execute(
                self._sql(
                    "SELECT count(*) FROM {s}.batches WHERE batch_id = %s AND status = 'loaded' "
                    "AND sha256 IS NOT DISTINCT FROM %s AND finished_at = %s "
                    "AND flow_run_id IS NOT DISTINCT FROM %s"
                ),
                [batch_id, replaced.sha256, replaced.finished_at, replaced.flow_run_id],
            ).fetchone()
            if not (ours and ours[0]):
                return False
            dates = self._dates_of(con, batch_id)
            with con.cursor() as cursor:
                for table in UNDO_TABLES:
                    target = self._sql("{s}.{t}", t=sql.Identifier(table))
                    cursor.execute(
                        self._sql("DELETE FROM {t} WHERE batch_id = %s", t=target), [batch_id]
                    )
                    statement = self._sql("COPY {t} FROM STDIN (FORMAT binary)", t=target)
                    with (
                        (undo_dir / f"{table}.pgcopy").open("rb") as saved,
                        cursor.copy(statement) as copy,
                    ):
                        while data := saved.read(1 << 20):
                            copy.write(data)
            self._refresh_daily_sales(con, dates + self._dates_of(con, batch_id))
        return True

    # --- records --------------------------------------------------------------------------

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """A failed or skipped attempt updates status and times; loaded rows and counts stay."""
        with self._write_transaction() as con:
            self._record_attempt(con, outcome)

    def _record_attempt(self, con: psycopg.Connection[Any], outcome: BatchOutcome) -> None:
        """Status, error, times and run of the latest attempt; loaded rows and counts stay."""
        self._adopt_earlier_ids(con, outcome.batch_id, outcome.source, always=False)
        if not self._count(con, "batches", outcome.batch_id):
            self._insert_batch(con, outcome)
            return
        con.execute(_psycopg_placeholders(RECORD_ATTEMPT_SQL), attempt_params(outcome))

    def _adopt_earlier_ids(
        self, con: psycopg.Connection[Any], batch_id: str, source: str, always: bool
    ) -> None:
        """Rename the batches recorded for this source under another id to its id, as
        DuckDBWarehouse._adopt_earlier_ids does (a load always, an attempt only when the id is
        not taken yet)."""
        earlier = [
            row[0]
            for row in con.execute(
                _psycopg_placeholders(EARLIER_IDS_OF_SOURCE_SQL), [source, batch_id]
            ).fetchall()
        ]
        if not earlier or (not always and self._count(con, "batches", batch_id)):
            return
        for old in earlier:
            self._rename_batch(con, old, batch_id)

    def _rename_batch(self, con: psycopg.Connection[Any], old: str, new: str) -> None:
        """Give a batch a new id in every table, derived order ids included."""
        for table in BATCH_TABLES:
            con.execute(
                self._sql(
                    "UPDATE {s}.{t} SET batch_id = %s WHERE batch_id = %s",
                    t=sql.Identifier(table),
                ),
                [new, old],
            )
        con.execute(_psycopg_placeholders(RENAME_DERIVED_ORDER_IDS_SQL), [new, new, old])

    def upgrade(self, landing_root: Path | None) -> None:
        """Bring an older warehouse to SCHEMA_VERSION in one transaction, as
        DuckDBWarehouse.upgrade does; a newer one is refused."""
        with self._write_transaction() as con:
            row = con.execute(self._sql("SELECT max(version) FROM {s}.schema_version")).fetchone()
            if not check_schema_version(self.location, row[0] if row else None):
                return
            recorded = con.execute(self._sql("SELECT batch_id, source FROM {s}.batches")).fetchall()
            for old, new in upgrade_renames(recorded, landing_root):
                self._rename_batch(con, old, new)
            con.execute(self._sql("DELETE FROM {s}.schema_version"))
            con.execute(
                self._sql("INSERT INTO {s}.schema_version VALUES (%s, now())"), [SCHEMA_VERSION]
            )

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
            con.execute(self._sql("DELETE FROM {s}.runs WHERE flow_run_id = %s"), [flow_run_id])
            con.execute(
                _psycopg_placeholders(RECORD_RUN_SQL),
                [flow_run_id, flow_name, state, started_at, message, flow_run_id],
            )

    def save_watermark(self, source: str, watermark: datetime) -> None:
        """Record that every change of `source` up to `watermark` is loaded."""
        with self._write_transaction() as con:
            con.execute(_psycopg_placeholders(SAVE_WATERMARK_SQL), [source, watermark])

    def replace_anomalies(self, dates: Sequence[date], anomalies: Sequence[Anomaly]) -> None:
        """The checked days' anomalies, replaced in one transaction (the search_path finds the
        table, so the shared SQL names it plainly)."""
        with self._write_transaction() as con, con.cursor() as cursor:
            cursor.execute(_psycopg_placeholders(DELETE_ANOMALIES_SQL), [sorted(set(dates))])
            if anomalies:
                cursor.executemany(
                    _psycopg_placeholders(INSERT_ANOMALY_SQL),
                    [anomaly_params(a) for a in anomalies],
                )

    # --- reading --------------------------------------------------------------------------

    def loaded_duplicates(self, manifest: BatchManifest) -> list[int]:
        """Dry run of the load's cross-batch duplicate check: the source rows it would move."""
        with self._connect() as con:
            exists = con.execute("SELECT to_regclass(%s)", [f"{self.schema}.sales"]).fetchone()
            if not (exists and exists[0]):
                return []
            # Rolled back: the temporary table is all it writes (no read-only transaction,
            # which PostgreSQL would not let create one).
            self._stage_sales(con, manifest)
            rows = con.execute(
                self._sql(_repeated_rows(_derived_order_ids(manifest)) + " ORDER BY 1"),
                [manifest.batch_id],
            ).fetchall()
            con.rollback()
        return [row[0] for row in rows]

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read-only query, in a read-only transaction. Tables are found in the
        warehouse schema; `?` placeholders are accepted as DuckDB accepts them."""
        with self._connect(read_only=True) as con, con.cursor() as cursor:
            if params:
                cursor.execute(_psycopg_placeholders(sql), params)
            else:
                cursor.execute(sql)  # without parameters psycopg sends it as it is
            rows = cursor.fetchall() if cursor.description is not None else []
            con.rollback()
        return rows

    def holds_data(self) -> bool:
        """The schema has the `batches` table. Connecting is not optional: an unreachable
        server or a missing database raises as everywhere else, it is not an empty warehouse."""
        with self._connect(read_only=True) as con:
            batches = self._sql("{s}.batches").as_string(con)
            row = con.execute("SELECT to_regclass(%s) IS NOT NULL", [batches]).fetchone()
            con.rollback()
        return bool(row and row[0])

    # The time limit of a user's query (statement_timeout): an analyst's runaway query must
    # not hold a connection and a snapshot of a shared warehouse for ever.
    QUERY_TIMEOUT_SECONDS: ClassVar[float] = 300.0
    QUERY_ONLY_READS: ClassVar[str] = "the query may only read the warehouse"

    @contextmanager
    def _query_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a READ ONLY transaction whose statements stop after
        QUERY_TIMEOUT_SECONDS; the caller rolls it back."""
        with self._connect(read_only=True) as con:
            con.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                [_ms(self.QUERY_TIMEOUT_SECONDS)],
            )
            yield con

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's query, which may only read the warehouse: in a READ ONLY transaction with a
        time limit, rolled back. It is prepared, so it travels by the extended protocol, which
        takes one statement: `COMMIT; INSERT ...` cannot end the read-only transaction (the
        simple protocol would run both). No parameters, so a `%` or `?` stays as written. The
        rows come to the client in full, then are cut to `limit`. A lost connection stays a
        WarehouseUnavailableError."""
        with self._query_connection() as con, con.cursor() as cursor:
            try:
                cursor.execute(sql, prepare=True)
            except psycopg.Error as error:
                if con.broken:
                    raise
                line = error_line(error)
                if isinstance(error, psycopg.errors.QueryCanceled):
                    line = f"stopped after {self.QUERY_TIMEOUT_SECONDS:g} s, the query time limit"
                elif isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
                    raise UsageError(f"query failed: {self.QUERY_ONLY_READS} ({line})") from None
                elif "multiple commands" in line:
                    raise UsageError(
                        f"query failed: {self.QUERY_ONLY_READS}; give one statement ({line})"
                    ) from None
                raise UsageError(f"query failed: {line}") from None
            columns = [column.name for column in cursor.description or []]
            rows = cursor.fetchmany(limit) if cursor.description is not None else []
            con.rollback()
        return QueryResult(columns, rows)

    def table_checksum(self, table: str) -> str:
        if table not in TABLE_KEYS:
            raise ValueError(f"no checksum defined for table {table!r}")
        rows = self.fetch(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(CAST(t AS text), chr(10) "
            f"ORDER BY {TABLE_KEYS[table]})), '') FROM {table} AS t"
        )
        return str(rows[0][0])


def _ms(seconds: float) -> str:
    """A PostgreSQL time setting in whole milliseconds, never 0 (which would mean no limit)."""
    return str(max(1, ceil(seconds * 1000)))
