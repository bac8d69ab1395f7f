"""The stages of a batch as plain functions over manifests: no Prefect in here.

plan (fingerprint), stage (the file as text-typed Parquet), validate (checks and transform in one
DuckDB pass: `sales` and quarantined rows) and load; `prepare` is stage and validate in one step,
the flow's one task per batch before its load. Each reads the previous stage's staged Parquet,
writes its own and returns a new manifest; the Prefect tasks in `flows/` only add orchestration
around them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from salesflow.contract import Reason
from salesflow.errors import (
    BatchError,
    ReconciliationError,
    SalesflowError,
    TransientError,
    UnreadableSourceError,
)
from salesflow.manifest import (
    BatchManifest,
    BatchOutcome,
    BatchStatus,
    skipped_outcome,
    staging_name,
)
from salesflow.options import ReadAs, Recheck
from salesflow.rules import ValidationRules
from salesflow.sources.files import (
    batch_identity,
    file_sha256,
    map_columns,
    map_profile_columns,
    source_path,
    stage_source,
)
from salesflow.staged_files import read_staged, require_staged, staged_files_of, write_staged
from salesflow.text import printable
from salesflow.transform import TicketBands, check_contract
from salesflow.validate import count_odd_but_valid, count_reasons, validate_batch
from salesflow.warehouse.base import LoadPolicy, SourceIndex, Warehouse

# Declared version of the stage code: part of every cache key, so a change to how batches are
# read, validated or transformed never reuses results of the old code. Bump it with such changes.
CODE_VERSION = "7"  # 7: extract and validate in one cached task (`prepare`)


def plan(
    source: Path,
    batch_id: str,
    loaded: SourceIndex | None,
    profile: ReadAs | None,
    recheck: Recheck = Recheck.STAT,
) -> BatchManifest:
    """Fingerprint a landing file and decide whether it needs loading: not when `loaded`,
    what the warehouse holds (`Warehouse.source_index`), has this very content for the batch,
    nor when another batch holds it (the same file under another name would count every row
    twice; `Recheck.NEVER`, --force, loads it all the same).

    A file whose size and modification time (ns) are those `batches` recorded when its loaded
    content was hashed is skipped without reading it (`Recheck.STAT`); `Recheck.HASH`
    (--verify) hashes it all the same, and any other file is hashed. `batch_id` is the source's
    identity (sources.files.batch_identity). Never cached: the warehouse's `batches` table, not
    a cache, says what is loaded. A source profile's column map travels with the manifest, so
    every stage's cache key knows how the file was read.
    """
    stat = _stat(source)  # before hashing: a file changed meanwhile is hashed again next time
    force = recheck == Recheck.NEVER
    unchanged = None
    if loaded is not None and recheck == Recheck.STAT:
        unchanged = loaded.unchanged_sha256(batch_id, str(source), stat)
    manifest = BatchManifest(
        batch_id=batch_id,
        source=str(source),
        sha256=unchanged or _fingerprint(source),
        source_size=stat[0],
        source_mtime_ns=stat[1],
        started_at=datetime.now(UTC),
        force=force,
        profile=profile.name if profile is not None else None,
        profile_columns=profile.columns if profile is not None else None,
    )
    if unchanged is not None:
        return manifest.model_copy(update={"skipped": True})
    if loaded is None or force:
        return manifest
    if loaded.loaded_sha256(batch_id, str(source)) == manifest.sha256:
        return manifest.model_copy(update={"skipped": True})
    elsewhere = loaded.loaded_elsewhere(manifest.sha256, batch_id, str(source))
    if elsewhere is not None:
        return manifest.model_copy(update={"skipped": True, "duplicate_of": elsewhere})
    return manifest


def stage(manifest: BatchManifest, staging_root: Path) -> BatchManifest:
    """Stage the landing file as text-typed Parquet under `staging_root`."""
    if manifest.skipped:
        return manifest
    source = Path(manifest.source)
    staged = manifest.model_copy(
        update={"staging_dir": staging_root / staging_name(manifest.batch_id)}
    )
    rows_in, header = stage_source(source, staged.raw_path)
    if manifest.profile is not None and manifest.profile_columns is not None:
        column_map = map_profile_columns(
            str(source), header, manifest.profile, manifest.profile_columns
        )
    else:
        column_map = map_columns(str(source), header)
    return staged.model_copy(
        update={"rows_in": rows_in, "header": header, "column_map": column_map}
    )


@dataclass(frozen=True)
class PrepareTimings:
    """Seconds each step of `prepare` took, for the task's log line."""

    extract: float = 0.0
    validate: float = 0.0


def prepare(
    manifest: BatchManifest,
    staging_root: Path,
    rules: ValidationRules,
    bands: TicketBands | None = None,
    split_rows: int = 0,
) -> tuple[BatchManifest, PrepareTimings]:
    """Stage and validate a planned batch in one step: what the flow runs as one task per
    batch, so a batch costs one orchestrated step before its load instead of two.

    A batch of more than `split_rows` rows (when set) comes back staged but not validated
    (`needs_split`): the flow cuts it by region and validates the parts side by side.
    """
    started = time.perf_counter()
    staged = stage(manifest, staging_root)
    extracted = time.perf_counter()
    if staged.skipped or needs_split(staged, split_rows):
        return staged, PrepareTimings(extract=extracted - started)
    checked = validate(staged, rules, bands)
    return checked, PrepareTimings(extracted - started, time.perf_counter() - extracted)


def needs_split(staged: BatchManifest, split_rows: int) -> bool:
    """Whether a staged batch is over `split_rows` (0: never split), so it is validated in
    parts, one per region."""
    return 0 < split_rows < staged.rows_in


def extract(
    source: Path,
    staging_root: Path,
    warehouse: Warehouse | None = None,
    force: bool = False,
    profile: str | None = None,
    profile_columns: Mapping[str, str] | None = None,
    batch_id: str | None = None,
) -> BatchManifest:
    """Plan and stage in one step (the dry run and tests use this); the batch id defaults to
    the file's name."""
    loaded = warehouse.source_index() if warehouse is not None else None
    read_as = None
    if profile is not None and profile_columns is not None:
        read_as = ReadAs(profile, dict(profile_columns))
    recheck = Recheck.NEVER if force else Recheck.STAT
    planned = plan(source, batch_id or source.name, loaded, read_as, recheck)
    return stage(planned, staging_root)


def _stat(source: Path) -> tuple[int, int]:
    """(size, mtime in ns) of the file; one that cannot be looked at is the batch's problem."""
    try:
        info = source.stat()
    except (FileNotFoundError, PermissionError) as error:
        raise UnreadableSourceError(str(source), f"cannot be opened ({error.strerror})") from None
    except OSError as error:
        raise TransientError(f"{source}: {error.strerror or error}") from error
    return info.st_size, info.st_mtime_ns


def _fingerprint(source: Path) -> str:
    """sha256 of the file; a file that cannot be opened is the batch's problem, not a crash."""
    try:
        return file_sha256(source)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise UnreadableSourceError(str(source), f"cannot be opened ({error.strerror})") from None
    except OSError as error:
        raise TransientError(f"{source}: {error.strerror or error}") from error


def validate(
    manifest: BatchManifest, rules: ValidationRules, bands: TicketBands | None = None
) -> BatchManifest:
    """Split the staged batch into `sales` rows (validated and transformed in one DuckDB pass,
    then checked against the contract) and quarantined rows with reasons; total the money for
    reconciliation."""
    if manifest.skipped:
        return manifest
    with read_staged(manifest, manifest.raw_path) as raw:
        result = validate_batch(raw, manifest.column_map, manifest.batch_id, rules, bands)
        sales = check_contract(result.sales)
        write_staged(sales, manifest.sales_path)
        write_staged(result.rejected, manifest.rejected_path)
    amount = sales.select(pl.col("total").sum()).item() if sales.height else 0
    return manifest.model_copy(
        update={
            "rows_valid": sales.height,
            "rows_rejected": result.rejected.height,
            "reason_counts": count_reasons(result.rejected),
            "odd_counts": count_odd_but_valid(sales),
            "amount": amount or 0,
        }
    )


def load(
    manifest: BatchManifest,
    warehouse: Warehouse,
    flow_run_id: str | None,
    policy: LoadPolicy | None = None,
) -> BatchOutcome:
    """Commit the batch to the warehouse (or record the skip).

    Staged files are left to their owner: a cached manifest may point into another run's
    staging folder, which only that run may clean up. With `policy.undo_dir`, the batch's
    previous version is saved there first, so the commit can be undone.
    """
    if manifest.skipped:
        outcome = skipped_outcome(manifest, flow_run_id)
        warehouse.record_outcome(outcome)
        return outcome
    inputs = (manifest.raw_path, manifest.sales_path, manifest.rejected_path)
    require_staged(manifest, *inputs)
    with staged_files_of(manifest, *inputs):
        return warehouse.load_batch(manifest, flow_run_id, policy)


def check_committed(outcome: BatchOutcome, warehouse: Warehouse) -> None:
    """Read the batch back through a new connection: what is committed must be what the load
    reported, or the load is not done."""
    if outcome.status != BatchStatus.LOADED:
        return
    mismatch = warehouse.read_back(outcome.batch_id).mismatch(outcome)
    if mismatch:
        raise ReconciliationError(
            outcome.source, f"read back after commit differs from the load: {mismatch}"
        )


def check_source(
    source: Path,
    rules: ValidationRules,
    warehouse: Warehouse | None = None,
    profile: str | None = None,
    profile_columns: Mapping[str, str] | None = None,
    landing_root: Path | None = None,
) -> BatchManifest:
    """Dry run of one file: the reasons a real run would give, written nowhere that stays.

    With a warehouse, rows that other batches already loaded count as duplicate_in_warehouse,
    as they would at load; the file's own batch (by its identity under `landing_root`, or the
    id recorded for its source) is not among them.
    """
    batch_id = batch_identity(source, landing_root)
    if warehouse is not None and warehouse.holds_data():
        batch_id = warehouse.source_index().batch_of_source.get(str(source_path(source)), batch_id)
    with tempfile.TemporaryDirectory(prefix="salesflow-check-") as scratch:
        staged = extract(source, Path(scratch), None, False, profile, profile_columns, batch_id)
        checked = validate(staged, rules)
        holds_data = warehouse is not None and warehouse.holds_data()
        if not holds_data or checked.rows_valid == 0:
            return checked
        assert warehouse is not None
        repeated = warehouse.loaded_duplicates(checked)
    if not repeated:
        return checked
    reasons = dict(checked.reason_counts)
    reasons[str(Reason.DUPLICATE_IN_WAREHOUSE)] = len(repeated)
    return checked.model_copy(
        update={
            "rows_valid": checked.rows_valid - len(repeated),
            "rows_rejected": checked.rows_rejected + len(repeated),
            "reason_counts": reasons,
        }
    )


def failed_outcome(
    source: Path,
    error: BaseException,
    started_at: datetime,
    flow_run_id: str | None,
    batch_id: str | None = None,
) -> BatchOutcome:
    """The record of a batch that could not be loaded, with a one-line error."""
    try:
        sha256: str | None = file_sha256(source)
    except OSError:
        sha256 = None
    return BatchOutcome(
        batch_id=batch_id or source.name,
        source=str(source),
        sha256=sha256,
        status=BatchStatus.FAILED,
        error=describe_failure(source, error),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        flow_run_id=flow_run_id,
    )


def describe_failure(source: Path, error: BaseException) -> str:
    """One line: our own errors already name the file; anything else gets it prefixed.

    Control characters are escaped (the line is shown in the CLI, the log and the batches
    table's error), so a file name cannot recolour a terminal or forge a summary line.
    """
    if isinstance(error, BatchError):
        return str(error)  # escaped already
    name = printable(str(source))
    if isinstance(error, SalesflowError):
        text = printable(str(error))
        return text if name in text else f"{name}: {text}"
    first_line = printable((str(error).strip().splitlines() or [""])[0])
    return f"{name}: unexpected {type(error).__name__}: {first_line}"
