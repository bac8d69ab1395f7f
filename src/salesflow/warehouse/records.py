"""The run, attempt, watermark and anomaly records, batch renames and the schema upgrade,
written once for both warehouses.

The SQL names tables plainly and takes `?` placeholders; a backend renders them (`_render`) and
supplies its write transaction and bulk insert (salesflow.warehouse.dialects).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salesflow.errors import UsageError
from salesflow.manifest import BatchOutcome
from salesflow.warehouse.base import (
    BATCH_TABLES,
    EARLIER_IDS_OF_SOURCE_SQL,
    SCHEMA_VERSION,
)

if TYPE_CHECKING:
    from salesflow.warehouse.base import RunRecord
    from salesflow.warehouse.dialects import Dialect
    from salesflow.warehouse.rows import Anomaly

# A flow run's record, its counts taken from its batches. Parameters: flow_run_id, flow_name,
# state, started_at, message, flow_run_id. Plain table names and `?`: both warehouses run it.
RECORD_RUN_SQL = (
    "INSERT INTO runs SELECT CAST(? AS VARCHAR), CAST(? AS VARCHAR), CAST(? AS VARCHAR), "
    "CAST(? AS TIMESTAMPTZ), now(), count(*), "
    "count(*) FILTER (WHERE status = 'loaded'), "
    "count(*) FILTER (WHERE status = 'skipped'), "
    "count(*) FILTER (WHERE status = 'failed'), "
    "coalesce(sum(rows_in) FILTER (WHERE status = 'loaded'), 0), "
    "coalesce(sum(rows_loaded) FILTER (WHERE status = 'loaded'), 0), "
    "coalesce(sum(rows_rejected) FILTER (WHERE status = 'loaded'), 0), "
    "coalesce(sum(amount_loaded) FILTER (WHERE status = 'loaded'), 0), "
    "CAST(? AS VARCHAR) FROM batches WHERE flow_run_id = ?"
)

_OWN_CONTENT_HASHED = "sha256 = CAST(? AS VARCHAR) AND CAST(? AS BIGINT) IS NOT NULL"

# A failed or skipped attempt at a batch already recorded: status, error, times and run change;
# what is loaded (sha256, counts, money) stays. A skip that hashed the file and found the loaded
# content records the file's size and mtime, so the next run need not hash it again; an attempt
# on other content (a failure, a duplicate of another batch) leaves them. Parameters:
# attempt_params(outcome).
RECORD_ATTEMPT_SQL = (
    "UPDATE batches SET status = ?, error = ?, started_at = ?, finished_at = ?, "
    "flow_run_id = ?, "
    f"source_size = CASE WHEN {_OWN_CONTENT_HASHED} THEN CAST(? AS BIGINT) ELSE source_size END, "
    f"source_mtime_ns = CASE WHEN {_OWN_CONTENT_HASHED} THEN CAST(? AS BIGINT) "
    "ELSE source_mtime_ns END "
    "WHERE batch_id = ?"
)


def attempt_params(outcome: BatchOutcome) -> list[Any]:
    """The parameters of RECORD_ATTEMPT_SQL for one outcome."""
    own_content = outcome.sha256 if outcome.status == "skipped" else None
    return [
        str(outcome.status),
        outcome.error,
        outcome.started_at,
        outcome.finished_at,
        outcome.flow_run_id,
        *(own_content, outcome.source_mtime_ns, outcome.source_size),
        *(own_content, outcome.source_mtime_ns, outcome.source_mtime_ns),
        outcome.batch_id,
    ]


# Where an incremental source has read up to. Parameters: source, watermark.
SAVE_WATERMARK_SQL = (
    "INSERT INTO watermarks (source, watermark, updated_at) VALUES (?, ?, now()) "
    "ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark, "
    "updated_at = excluded.updated_at"
)

# A check's anomalies replace those of the days it checked. Plain table names and `?`: both
# warehouses run them. DELETE parameter: the checked dates (a list); INSERT: anomaly_params().
DELETE_ANOMALIES_SQL = "DELETE FROM anomalies WHERE list_contains(CAST(? AS DATE[]), order_date)"
ANOMALY_COLUMNS = (
    "order_date, region, kpi, value, median, mad, robust_z, direction, window_days, "
    "detected_at, flow_run_id"
)
INSERT_ANOMALY_SQL = (
    f"INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def anomaly_params(anomaly: Anomaly) -> list[Any]:
    """The parameters of INSERT_ANOMALY_SQL for one anomaly, its fields by column name."""
    return [getattr(anomaly, column) for column in ANOMALY_COLUMNS.split(", ")]


# A batch renamed from an earlier id keeps no trace of it: the order ids derived from the old
# name (`<batch id>#<row>`, for files without order_id) take the new one, as a fresh load of
# the source would write them. Parameters: new id, new id, old id. Run after the rename.
RENAME_DERIVED_ORDER_IDS_SQL = (
    "UPDATE sales SET order_id = ? || '#' || CAST(source_row AS VARCHAR) "
    "WHERE batch_id = ? AND order_id = ? || '#' || CAST(source_row AS VARCHAR)"
)


def check_schema_version(location: str, version: int | None) -> bool:
    """Whether a warehouse at `version` (None: 1, before the table) needs the upgrade step; a
    warehouse newer than this salesflow is refused, never rewritten."""
    if version is not None and version > SCHEMA_VERSION:
        raise UsageError(
            f"{location}: warehouse schema version {version} is newer than this "
            f"salesflow's ({SCHEMA_VERSION}); upgrade salesflow to write to it"
        )
    return version != SCHEMA_VERSION


def upgrade_renames(
    recorded: Sequence[tuple[str, str]], landing_root: Path | None
) -> list[tuple[str, str]]:
    """Schema 1 -> 2: the (old id, new id) renames that give each recorded batch whose source
    file is still there its path-based id (sources.files.batch_identity), skipping any id
    another batch already holds. A batch whose file is gone keeps its id until its source is
    loaded again, when the load adopts it by its recorded source."""
    from salesflow.sources.files import batch_identity

    taken = {batch_id for batch_id, _ in recorded}
    renames = []
    for batch_id, source in recorded:
        path = Path(source)
        if not path.is_absolute() or not path.is_file():
            continue
        wanted = batch_identity(path, landing_root)
        if wanted != batch_id and wanted not in taken:
            renames.append((batch_id, wanted))
            taken.add(wanted)
    return renames


class SqlRecords:
    """Records, batch renames and the schema upgrade over a dialect's connection."""

    location: str
    dialect: Dialect

    def _render(self, sql: str) -> str:
        """The shared `?` SQL in the dialect's placeholders."""
        return self.dialect.render(sql)

    def record_run(self, run: RunRecord) -> None:
        """Write (or rewrite) a flow run's record, its counts taken from its batches."""
        with self.dialect.write_transaction() as con:
            con.execute(self._render("DELETE FROM runs WHERE flow_run_id = ?"), [run.flow_run_id])
            con.execute(
                self._render(RECORD_RUN_SQL),
                [
                    run.flow_run_id,
                    run.flow_name,
                    run.state,
                    run.started_at,
                    run.message,
                    run.flow_run_id,  # the run whose batches are counted
                ],
            )

    def save_watermark(self, source: str, watermark: datetime) -> None:
        """Record that every change of `source` up to `watermark` is loaded."""
        with self.dialect.write_transaction() as con:
            con.execute(self._render(SAVE_WATERMARK_SQL), [source, watermark])

    def replace_anomalies(self, dates: Sequence[date], anomalies: Sequence[Anomaly]) -> None:
        """The checked days' anomalies, replaced in one transaction."""
        with self.dialect.write_transaction() as con:
            con.execute(self._render(DELETE_ANOMALIES_SQL), [sorted(set(dates))])
            if anomalies:
                self.dialect.execute_many(
                    con, self._render(INSERT_ANOMALY_SQL), [anomaly_params(a) for a in anomalies]
                )

    def _adopt_earlier_ids(self, con: Any, batch_id: str, source: str, always: bool) -> None:
        """Rename the batches recorded for this source under another id (an older
        salesflow's bare file names, another landing root) to its id, so one source is one
        batch. A load always does (it then replaces all of them); recording an attempt only
        when the id is not taken yet, so `batches` never holds an id twice."""
        found = con.execute(self._render(EARLIER_IDS_OF_SOURCE_SQL), [source, batch_id])
        earlier = [row[0] for row in found.fetchall()]
        if not earlier:
            return
        if not always:
            taken = con.execute(
                self._render("SELECT count(*) FROM batches WHERE batch_id = ?"), [batch_id]
            ).fetchone()
            if taken and taken[0]:
                return
        for old in earlier:
            self._rename_batch(con, old, batch_id)

    def _rename_batch(self, con: Any, old: str, new: str) -> None:
        """Give a batch a new id in every table, derived order ids included."""
        for table in BATCH_TABLES:
            con.execute(
                self._render(f"UPDATE {table} SET batch_id = ? WHERE batch_id = ?"), [new, old]
            )
        con.execute(self._render(RENAME_DERIVED_ORDER_IDS_SQL), [new, new, old])

    def upgrade(self, landing_root: Path | None) -> None:
        """Bring an older warehouse to SCHEMA_VERSION, in one transaction.

        1 -> 2: batch ids were bare file names; each batch whose source file is still there
        takes its id from its path (sources.files.batch_identity under `landing_root`). A
        batch whose file is gone keeps its id until its source is loaded again, when the load
        adopts it by its recorded source. 2 -> 3: `batches` records each file's size and mtime
        (NULL for the batches loaded before, which the next run hashes once). A newer
        warehouse is refused, not rewritten.
        """
        with self.dialect.write_transaction() as con:
            row = con.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if not check_schema_version(self.location, version):
                return
            for column in ("source_size", "source_mtime_ns"):
                con.execute(f"ALTER TABLE batches ADD COLUMN IF NOT EXISTS {column} BIGINT")
            if version is None or version < 2:
                recorded = con.execute("SELECT batch_id, source FROM batches").fetchall()
                for old, new in upgrade_renames(recorded, landing_root):
                    self._rename_batch(con, old, new)
            con.execute("DELETE FROM schema_version")
            con.execute(
                self._render("INSERT INTO schema_version VALUES (?, now())"), [SCHEMA_VERSION]
            )
