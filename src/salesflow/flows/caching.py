"""Cache keys of the stage tasks: what the result depends on, never the run or a data frame.

A stage's result (a small manifest) is reused when the same file content (sha256) meets the
same contract version, the same declared code version and the same rules. Results live in the
configured result storage; the staged Parquet they point to lives in the staging folder, and a
stage that finds it gone raises StaleStagingError so the flow redoes the batch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem, WritableFileSystem

from salesflow.config import Settings
from salesflow.contract import CONTRACT_VERSION
from salesflow.manifest import BatchManifest
from salesflow.stages import CODE_VERSION


def _key(stage: str, manifest: BatchManifest, *extra: Any) -> str:
    parts = [stage, manifest.batch_id, manifest.sha256, CONTRACT_VERSION, CODE_VERSION]
    if manifest.part is not None:  # one region of a split batch
        parts.append(f"part={manifest.part}")
    if manifest.profile is not None:  # read through a profile's column map, not by headers
        parts.append(f"profile={manifest.profile}")
        parts.append(repr(sorted((manifest.profile_columns or {}).items())))
    parts += [repr(value) for value in extra]
    return f"salesflow-{stage}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def prepare_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Extract-validate: the rules and bands decide the rows, `split_rows` whether the batch
    comes back validated or staged for splitting."""
    manifest: BatchManifest = parameters["manifest"]
    if manifest.skipped:
        return None
    extra = (parameters["rules"], parameters["bands"], parameters["split_rows"])
    return _key("prepare", manifest, *extra)


def validate_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    manifest: BatchManifest = parameters["manifest"]
    if manifest.skipped:
        return None
    return _key("validate", manifest, parameters["rules"], parameters["bands"])


def result_storage(settings: Settings) -> Path | WritableFileSystem:
    """A local folder by default; any fsspec URL (s3://, gs://, memory://...) when set.

    Prefect wants remote storage as a saved block: it is saved under a name derived from the
    URL, so every run and worker resolves the same storage.
    """
    location = settings.result_storage or str((settings.data_dir / "results").resolve())
    if "://" not in location:
        return Path(location).expanduser().resolve()
    block = RemoteFileSystem(basepath=location)
    digest = hashlib.sha256(location.encode()).hexdigest()[:12]
    block.save(f"salesflow-results-{digest}", overwrite=True)
    return block
