"""The warehouse interface every destination implements, and the SQL they share.

A destination is a plug-in (DuckDB now, PostgreSQL later): the flow speaks only this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from salesflow.contract import CANONICAL_COLUMNS
from salesflow.errors import ReconciliationError, RejectThresholdError
from salesflow.manifest import BatchManifest, BatchOutcome

if TYPE_CHECKING:
    from salesflow.warehouse.rows import Anomaly

# The daily_sales mart, recomputed for the order dates a load touched.
DAILY_SALES_SELECT = """
SELECT order_date, region, category,
       count(DISTINCT order_id) AS orders,
       sum(quantity) AS units,
       sum(total) AS net_revenue,
       coalesce(sum(-total) FILTER (WHERE quantity < 0), 0) AS returns_value
FROM sales
"""

# How tables are ordered for a checksum: by their natural key.
TABLE_KEYS: dict[str, str] = {
    "sales": "batch_id, source_row",
    "sales_rejected": "batch_id, source_row",
    "daily_sales": "order_date, region, category",
    "batches": "batch_id",
    "runs": "flow_run_id",
    "watermarks": "source",
    "anomalies": "order_date, region, kpi",
}


def error_line(error: BaseException) -> str:
    """The first line of a database error: the message, without the SQL excerpt and caret
    both databases add below it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class Warehouse(Protocol):
    """What the flow needs of a warehouse."""

    location: str

    def ensure_schema(self) -> None:
        """Create the public tables if they do not exist."""

    def loaded_sha256(self, batch_id: str) -> str | None:
        """sha256 of the source whose rows are loaded for this batch, if any."""

    def source_index(self) -> SourceIndex:
        """Every batch's id, source and loaded content: one read plans a whole run."""

    def upgrade(self, landing_root: Path | None) -> None:
        """Bring a warehouse written by an older salesflow to SCHEMA_VERSION (see there)."""

    def load_batch(
        self, manifest: BatchManifest, flow_run_id: str | None, policy: LoadPolicy | None = None
    ) -> BatchOutcome:
        """Replace the batch's rows atomically, reconcile, refresh marts, record the batch.

        With `policy.undo_dir`, first save the batch's previous version there, for a rollback.
        """

    def restore_previous_version(self, replaced: BatchOutcome, undo_dir: Path) -> bool:
        """Undo the committed load that produced `replaced`, unless a later load replaced it."""

    def read_back(self, batch_id: str) -> LoadedBatch:
        """What the warehouse holds for a batch, seen from a new connection."""

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """Record a failed or skipped batch without touching its loaded rows."""

    def loaded_duplicates(self, manifest: BatchManifest) -> list[int]:
        """Source rows of a transformed batch that other batches already loaded (a dry run)."""

    def record_run(self, run: RunRecord) -> None:
        """Write a flow run's record to `runs`, with counts from its batches."""

    def read_watermark(self, source: str) -> datetime | None:
        """How far an incremental source has been loaded (its latest change time), if at all."""

    def save_watermark(self, source: str, watermark: datetime) -> None:
        """Record that every change of `source` up to `watermark` is loaded."""

    def replace_anomalies(self, dates: Sequence[date], anomalies: Sequence[Anomaly]) -> None:
        """In one transaction, delete the anomalies of the checked `dates` and insert those
        found, so checking a day again leaves the same rows."""

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read-only query."""

    def holds_data(self) -> bool:
        """Whether the warehouse exists with its tables: readers of a warehouse nobody loaded
        yet answer "nothing" instead of failing. An unreachable server still raises."""

    def query(self, sql: str, limit: int) -> QueryResult:
        """A user's ad-hoc query, read only and sent as written: its column names and at most
        `limit` rows; a query the database refuses is a one-line UsageError."""

    def table_checksum(self, table: str) -> str:
        """A checksum of a table's content, in its natural key order."""


# A batch's loaded content: recorded with its counts (rows_in), latest attempt loaded or skipped.
_LOADED_FINGERPRINTS = (
    "SELECT batch_id, sha256 FROM batches WHERE rows_in IS NOT NULL "
    "AND status IN ('loaded', 'skipped')"
)

# The first batch (by id) other than this one whose loaded content has this sha256: loading
# the same bytes under a second batch id would count every row twice. Content without rows (a
# header-only file, an oltp day emptied of orders) doubles nothing: two such files are two
# batches. Parameters: sha256, batch_id.
CONTENT_LOADED_ELSEWHERE_SQL = (
    "SELECT min(batch_id) FROM batches WHERE sha256 = ? AND batch_id <> ? "
    "AND rows_in > 0 AND status IN ('loaded', 'skipped')"
)

# The tables whose rows carry a batch id.
BATCH_TABLES = ("sales", "sales_rejected", "batches")

# Batches recorded for this source under another id (written before batch ids were paths, or
# under another landing root): the load renames them to the source's id. Parameters: source,
# batch_id.
EARLIER_IDS_OF_SOURCE_SQL = (
    "SELECT DISTINCT batch_id FROM batches WHERE source = ? AND batch_id <> ? ORDER BY 1"
)


def repeated_row_condition(derived_order_ids: bool, nullable: Sequence[str] | None = None) -> str:
    """When a staged row `s` repeats a warehouse row `w`: identical in every contract field.

    A batch whose file has no order_id column carries ids derived from its own name and row
    (`<batch id>#<row>`), which differ for the same row under another file name; its rows are
    compared without the order_id, against warehouse rows whose id was derived too, so the
    same course file loaded under two names is caught. `nullable` names the columns compared
    with IS NOT DISTINCT FROM (PostgreSQL hash-joins on `=`); None: all of them.
    """
    terms = []
    for column in CANONICAL_COLUMNS:
        if derived_order_ids and column == "order_id":
            # Ends in '#<its source_row>' (`right`, not LIKE: `%` is psycopg's placeholder).
            row = "CAST(w.source_row AS VARCHAR)"
            terms.append(f"right(w.order_id, length({row}) + 1) = '#' || {row}")
        elif nullable is None or column in nullable:
            terms.append(f"w.{column} IS NOT DISTINCT FROM s.{column}")
        else:
            terms.append(f"w.{column} = s.{column}")
    return " AND ".join(terms)


# Schema versions: 1 = batch ids were bare file names (no schema_version table); 2 = batch ids
# are paths relative to the landing root (sources.files.batch_identity); 3 = `batches` records
# each source file's size and mtime (an unchanged re-run skips it without hashing).
SCHEMA_VERSION = 3


class SourceIndex(NamedTuple):
    """What the warehouse knows of its sources, read once per run for all of its plans."""

    sha256_of_batch: dict[str, str]  # batch id -> sha256 of the content loaded for it
    batch_of_sha256: dict[str, str]  # sha256 -> the (first) batch id holding it, with rows
    batch_of_source: dict[str, str]  # source path -> the batch id recorded for it
    # batch id -> (size, mtime in ns) of its file when the loaded content was hashed
    stat_of_batch: dict[str, tuple[int, int]]

    @classmethod
    def empty(cls) -> SourceIndex:
        return cls({}, {}, {}, {})

    def _recorded_id(self, batch_id: str, source: str) -> str | None:
        """This batch's id if it has loaded content, else its source's earlier id."""
        if batch_id in self.sha256_of_batch:
            return batch_id
        return self.batch_of_source.get(source)

    def loaded_sha256(self, batch_id: str, source: str) -> str | None:
        """The content loaded for this batch, or for its source under an earlier id."""
        recorded = self._recorded_id(batch_id, source)
        return self.sha256_of_batch.get(recorded) if recorded is not None else None

    def unchanged_sha256(self, batch_id: str, source: str, stat: tuple[int, int]) -> str | None:
        """The loaded content's sha256 when the file's size and mtime are those recorded when
        it was hashed: the file is taken as unchanged without reading it (see plan)."""
        recorded = self._recorded_id(batch_id, source)
        if recorded is None or self.stat_of_batch.get(recorded) != stat:
            return None
        return self.sha256_of_batch.get(recorded)

    def loaded_elsewhere(self, sha256: str, batch_id: str, source: str) -> str | None:
        """Another batch holding this very content (not this batch, nor its source's)."""
        holder = self.batch_of_sha256.get(sha256)
        if holder is None or holder == batch_id or holder == self.batch_of_source.get(source):
            return None
        return holder


class SqlQueries:
    """Read queries both warehouses answer with the same SQL (through their own `fetch`, which
    takes `?` placeholders)."""

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def loaded_sha256(self, batch_id: str) -> str | None:
        """sha256 of the source whose rows are loaded for this batch, if any."""
        rows = self.fetch(f"{_LOADED_FINGERPRINTS} AND batch_id = ?", [batch_id])
        return rows[0][1] if rows else None

    def source_index(self) -> SourceIndex:
        """Every batch's id, source and loaded content at once: one read plans a whole run."""
        if not self.holds_data():
            return SourceIndex.empty()
        # A warehouse not upgraded yet (read by `validate` or the scheduled flow's check, which
        # never write) has no file stats: its files are hashed, as they were before.
        stats = "source_size, source_mtime_ns" if self._has_file_stats() else "NULL, NULL"
        rows = self.fetch(
            "SELECT batch_id, source, CASE WHEN rows_in IS NOT NULL AND status IN "
            f"('loaded', 'skipped') THEN sha256 END, coalesce(rows_in, 0), {stats} "
            "FROM batches ORDER BY batch_id"
        )
        index = SourceIndex.empty()
        for batch_id, source, sha256, rows_in, size, mtime_ns in rows:
            index.batch_of_source.setdefault(source, batch_id)
            if sha256 is not None:
                index.sha256_of_batch[batch_id] = sha256
                if size is not None and mtime_ns is not None:
                    index.stat_of_batch[batch_id] = (size, mtime_ns)
                if rows_in > 0:  # see CONTENT_LOADED_ELSEWHERE_SQL
                    index.batch_of_sha256.setdefault(sha256, batch_id)
        return index

    def holds_data(self) -> bool:
        raise NotImplementedError

    def _has_file_stats(self) -> bool:
        """Whether `batches` has the columns schema 3 added (source_size, source_mtime_ns)."""
        rows = self.fetch(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'batches' AND column_name = 'source_mtime_ns'"
        )
        return bool(rows[0][0])

    def read_watermark(self, source: str) -> datetime | None:
        """How far an incremental source has been loaded (its latest change time), if at all."""
        rows = self.fetch("SELECT watermark FROM watermarks WHERE source = ?", [source])
        return rows[0][0] if rows else None

    def read_back(self, batch_id: str) -> LoadedBatch:
        """What a new connection sees of a batch after its commit.

        The sha256 is that of the loaded content whatever the latest attempt's status: another
        run may have recorded its own skip (or failure) of this batch since the commit.
        """
        rows = self.fetch(
            "SELECT (SELECT count(*) FROM sales WHERE batch_id = ?), "
            "(SELECT coalesce(sum(total), 0) FROM sales WHERE batch_id = ?), "
            "(SELECT count(*) FROM sales_rejected WHERE batch_id = ?), "
            "(SELECT max(sha256) FROM batches WHERE batch_id = ? AND rows_in IS NOT NULL)",
            [batch_id] * 4,
        )
        loaded, amount, rejected, sha256 = rows[0]
        return LoadedBatch(loaded, rejected, amount, sha256)


class QueryResult(NamedTuple):
    """What an ad-hoc query returned, cut to the rows a user asked to see."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class LoadedBatch(NamedTuple):
    """A committed batch as read back: what the flow checks before it calls a load done."""

    rows_loaded: int
    rows_rejected: int
    amount_loaded: Decimal
    sha256: str | None

    def mismatch(self, outcome: BatchOutcome) -> str | None:
        """How the read-back differs from what the load reported, or None."""
        expected = LoadedBatch(
            outcome.rows_loaded, outcome.rows_rejected, outcome.amount_loaded, outcome.sha256
        )
        differences = [
            f"{field} {seen} != {wanted}"
            for field, seen, wanted in zip(self._fields, self, expected, strict=True)
            if seen != wanted
        ]
        return "; ".join(differences) or None


@dataclass(frozen=True)
class Observed:
    """What the warehouse holds for a batch inside its load transaction, before commit."""

    rows_loaded: int
    rows_rejected: int
    amount_loaded: Decimal
    amount_from_raw: Decimal
    rows_moved: int = 0  # valid rows quarantined as duplicate_in_warehouse at load
    amount_moved: Decimal = Decimal(0)


def reconcile(manifest: BatchManifest, seen: Observed) -> None:
    """Fail the batch unless what the warehouse holds matches what the pipeline counted, and
    the money loaded equals the money recomputed independently from the raw text."""
    problems = []
    if seen.rows_loaded + seen.rows_rejected != manifest.rows_in:
        problems.append(
            f"rows_in {manifest.rows_in} != rows_loaded {seen.rows_loaded} "
            f"+ rows_rejected {seen.rows_rejected}"
        )
    if seen.rows_loaded != manifest.rows_valid - seen.rows_moved:
        problems.append(
            f"rows_loaded {seen.rows_loaded} != rows validated {manifest.rows_valid} "
            f"- moved at load {seen.rows_moved}"
        )
    if seen.rows_rejected != manifest.rows_rejected + seen.rows_moved:
        problems.append(
            f"rows_rejected {seen.rows_rejected} != rows quarantined {manifest.rows_rejected} "
            f"+ moved at load {seen.rows_moved}"
        )
    if seen.amount_loaded != manifest.amount - seen.amount_moved:
        problems.append(
            f"amount loaded {seen.amount_loaded} != amount transformed {manifest.amount} "
            f"- moved at load {seen.amount_moved}"
        )
    if seen.amount_loaded != seen.amount_from_raw:
        problems.append(
            f"amount loaded {seen.amount_loaded} != amount from the raw input "
            f"{seen.amount_from_raw}"
        )
    if problems:
        raise ReconciliationError(
            manifest.source, "reconciliation failed, batch not committed: " + "; ".join(problems)
        )


@dataclass(frozen=True)
class RunRecord:
    """One flow run as `runs` records it; the counts are taken from its batches."""

    flow_run_id: str
    flow_name: str
    state: str
    started_at: datetime | None = None
    message: str | None = None  # why it did not complete


@dataclass(frozen=True)
class LoadPolicy:
    """How a load is done: what share of rejects fails a batch, cross-batch duplicates, how
    long it may run, and where (if anywhere) the batch's previous version is saved first so
    the commit can be undone."""

    max_reject_share: float = 1.0
    accept_rejects: bool = False
    reject_duplicates_in_warehouse: bool = True
    timeout_seconds: float | None = None  # the database interrupts a load running longer
    undo_dir: Path | None = None  # per batch: set with dataclasses.replace

    def check_reject_share(
        self,
        manifest: BatchManifest,
        rejected: int,
        reason_counts: dict[str, int],
        duplicates_of: Sequence[str] = (),
    ) -> None:
        """Fail the whole batch when too many of its rows were rejected (unless accepted).

        `duplicates_of` names the batches that already hold rows this one repeats, so a file
        loaded twice under two names says where its rows already are."""
        if self.accept_rejects or manifest.rows_in == 0:
            return
        share = rejected / manifest.rows_in
        if share <= self.max_reject_share:
            return
        reasons = ", ".join(f"{code} {count}" for code, count in reason_counts.items())
        if duplicates_of:
            earlier = ", ".join(f"'{batch_id}'" for batch_id in duplicates_of)
            reasons += f" (rows already loaded by batch {earlier})"
        raise RejectThresholdError(
            manifest.source,
            f"{rejected} of {manifest.rows_in} rows rejected ({share:.1%}, above the "
            f"{self.max_reject_share:.1%} limit): {reasons}; nothing loaded. See "
            "`salesflow validate` for the rows, or load anyway with --accept-rejects",
        )
