"""Dry run of landing files: plan, stage and validate each one without loading anything.

`salesflow validate` prints what this returns; it gives the reasons a real run would give
(duplicate_in_warehouse included when the warehouse exists) and writes nowhere that stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from salesflow import stages
from salesflow.config import Settings
from salesflow.errors import BatchError, SalesflowError
from salesflow.manifest import BatchManifest
from salesflow.options import apply_run_profile
from salesflow.rules import ValidationRules
from salesflow.sources.files import discover_sources
from salesflow.warehouse import open_warehouse


@dataclass(frozen=True)
class FileCheck:
    """One file's dry run: its manifest when it could be read, else why it could not."""

    source: Path
    manifest: BatchManifest | None = None
    error: SalesflowError | None = None
    max_reject_share: float = 1.0

    @property
    def problem(self) -> str:
        """Why the file is unreadable, without the file name a BatchError repeats."""
        if self.error is None:
            return ""
        return self.error.problem if isinstance(self.error, BatchError) else str(self.error)

    @property
    def reject_share(self) -> float:
        """Share of the file's rows that would be rejected (0 for an empty or unread file)."""
        if self.manifest is None or not self.manifest.rows_in:
            return 0.0
        return self.manifest.rows_rejected / self.manifest.rows_in

    @property
    def would_fail(self) -> bool:
        """True when a real run would fail the batch for rejecting too many rows."""
        return self.reject_share > self.max_reject_share


def dry_run(
    paths: list[Path],
    settings: Settings,
    profile: str | None = None,
    planned: Callable[[int], None] | None = None,
    starting: Callable[[Path], None] | None = None,
    checked: Callable[[FileCheck], None] | None = None,
) -> list[FileCheck]:
    """Check every landing file under `paths` against the contract, in name order.

    For a progress bar, `planned` is told how many files there are, `starting` and `checked`
    are called around each one. A file that cannot be read is a FileCheck with its error, so
    one bad file does not hide the others.
    """
    settings, read_as = apply_run_profile(settings, profile)
    files = discover_sources(paths)
    if planned is not None:
        planned(len(files))
    rules = ValidationRules.from_settings(settings)
    existing = open_warehouse(settings.warehouse_location)
    results: list[FileCheck] = []
    for source in files:
        if starting is not None:
            starting(source)
        try:
            manifest = stages.check_source(
                source,
                rules,
                existing,
                read_as.name if read_as else None,
                read_as.columns if read_as else None,
                settings.landing_dir,
            )
        except SalesflowError as error:
            result = FileCheck(source, error=error)
        else:
            result = FileCheck(source, manifest, max_reject_share=settings.max_reject_share)
        results.append(result)
        if checked is not None:
            checked(result)
    return results
