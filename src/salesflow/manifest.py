"""Batch manifests: the small records passed between pipeline stages instead of data frames.

A manifest names a batch, where its staged Parquet files are, and its counts; it is cheap to pass
through Prefect and to log, whatever the size of the batch.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, overload

from pydantic import BaseModel, Field


class BatchStatus(StrEnum):
    LOADED = "loaded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_ATTEMPTED = "not_attempted"  # a run-wide fault stopped the run before this batch


class StagedFile:
    """A read-only manifest attribute naming one staged file: `manifest.raw_path` is
    `manifest.staged("raw.parquet")`. Not a model field, so it is never serialised."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, manifest: None, owner: type[BatchManifest]) -> StagedFile: ...
    @overload
    def __get__(self, manifest: BatchManifest, owner: type[BatchManifest]) -> Path: ...
    def __get__(
        self, manifest: BatchManifest | None, owner: type[BatchManifest]
    ) -> Path | StagedFile:
        return self if manifest is None else manifest.staged(self.name)


class BatchManifest(BaseModel):
    """One batch on its way through extract -> validate -> transform -> load."""

    batch_id: str = Field(
        description="The source's path relative to the landing root (or its absolute path): "
        "what identifies a batch, see sources.files.batch_identity."
    )
    source: str = Field(description="Absolute path of the landing file.")
    sha256: str
    source_size: int | None = Field(None, description="The file's size when it was hashed.")
    source_mtime_ns: int | None = Field(
        None, description="The file's modification time (ns) when it was hashed."
    )
    started_at: datetime
    skipped: bool = Field(False, description="Unchanged since its last load: nothing to do.")
    duplicate_of: str | None = Field(
        None, description="Skipped because this very content is loaded as that other batch."
    )
    force: bool = Field(False, description="Reload even if this content is already loaded.")
    staging_dir: Path | None = None
    part: str | None = Field(
        None, description="The region this part of a split batch holds; None for a whole batch."
    )
    profile: str | None = Field(
        None, description="Source profile whose column map replaces header aliasing."
    )
    profile_columns: dict[str, str] | None = Field(
        None, description="That profile's map, source column -> canonical column."
    )
    header: list[str] = Field(default_factory=list, description="The file's own column names.")
    column_map: dict[str, str] = Field(default_factory=dict)
    rows_in: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    amount: Decimal = Field(Decimal(0), description="Sum of `total` over the transformed rows.")
    reason_counts: dict[str, int] = Field(default_factory=dict)
    odd_counts: dict[str, int] = Field(
        default_factory=dict, description="Valid but worth a look: zero_price, returns."
    )

    # The batch's staged files, one per stage it has passed.
    raw_path: ClassVar[StagedFile] = StagedFile("raw.parquet")
    rejected_path: ClassVar[StagedFile] = StagedFile("rejected.parquet")
    sales_path: ClassVar[StagedFile] = StagedFile("sales.parquet")

    def staged(self, name: str) -> Path:
        """`name` in the batch's staging folder; a batch that was never staged has none."""
        if self.staging_dir is None:
            raise ValueError(f"batch {self.batch_id} has no staging directory")
        return self.staging_dir / name


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def staging_name(batch_id: str) -> str:
    """A folder name for a batch's staged files: a batch id is a path (or holds `[`, `*`, a
    newline...), never a name to join onto a folder as it is."""
    digest = hashlib.sha256(batch_id.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", batch_id.rsplit("/", 1)[-1])[:48].strip("._") or "batch"
    return f"{readable}-{digest}"


class BatchOutcome(BaseModel):
    """What happened to one batch; also the row written to the `batches` table."""

    batch_id: str
    source: str
    sha256: str | None
    status: BatchStatus
    rows_in: int | None = None
    rows_loaded: int = 0
    rows_rejected: int = 0
    amount_loaded: Decimal = Decimal(0)
    error: str | None = None
    reason_counts: dict[str, int] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    flow_run_id: str | None = None
    source_size: int | None = None  # the file's size and mtime when `sha256` was taken
    source_mtime_ns: int | None = None


def skipped_outcome(
    manifest: BatchManifest, flow_run_id: str | None, duplicate_of: str | None = None
) -> BatchOutcome:
    """The record of an attempt that found this content already loaded: as this batch, or as
    `duplicate_of`, another batch (then the note says so and nothing is loaded twice)."""
    duplicate_of = duplicate_of or manifest.duplicate_of
    note = None
    if duplicate_of is not None:
        note = (
            f"{manifest.source}: same content as batch '{duplicate_of}', already loaded; not "
            "loaded again (--force loads it as a batch of its own)"
        )
    return outcome_of(manifest, BatchStatus.SKIPPED, flow_run_id, error=note)


def outcome_of(
    manifest: BatchManifest, status: BatchStatus, flow_run_id: str | None, **recorded: Any
) -> BatchOutcome:
    """The record of an attempt at the manifest's file, finished now: which file and content,
    when it started, plus what the attempt `recorded` (counts, money, error)."""
    return BatchOutcome(
        batch_id=manifest.batch_id,
        source=manifest.source,
        sha256=manifest.sha256,
        source_size=manifest.source_size,
        source_mtime_ns=manifest.source_mtime_ns,
        status=status,
        started_at=manifest.started_at,
        finished_at=datetime.now(UTC),
        flow_run_id=flow_run_id,
        **recorded,
    )
