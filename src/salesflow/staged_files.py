"""A batch's staged files: written whole or not at all, and read knowing they may be gone.

Overlapping runs share cached manifests and so each other's staging folders; a file cleaned up by
the run that wrote it makes the batch be redone (StaleStagingError), never fail.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from salesflow.errors import StaleStagingError
from salesflow.manifest import BatchManifest


def require_staged(manifest: BatchManifest, *paths: Path) -> None:
    """A cached manifest may name staged files that were cleaned up since: say so plainly."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise StaleStagingError(
            f"{manifest.source}: staged files are gone ({missing[0].name}); redoing the batch"
        )


def write_staged(frame: pl.DataFrame, path: Path) -> None:
    """Write a staged Parquet file whole or not at all: written beside it, then renamed over it.

    Overlapping runs reuse one cached manifest, so two runs may write the same stage's file
    (with the same content) while a third reads it; a reader then sees the old file or the new
    one, never a half-written one.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        frame.write_parquet(partial, compression="lz4")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def staged_files_of(manifest: BatchManifest, *inputs: Path) -> Iterator[None]:
    """Reading and writing a batch's staged files, which a cached manifest may share with the
    run that staged them: if that run cleans its folder up meanwhile, the files are gone, and
    the batch is redone (StaleStagingError), not failed with whatever the reader said (a
    FileNotFoundError, DuckDB's "no files found"). Any failure after which one of `inputs`
    is gone counts as that."""
    try:
        yield
    except Exception as error:
        if isinstance(error, FileNotFoundError) or any(not path.exists() for path in inputs):
            raise StaleStagingError(
                f"{manifest.source}: staged files went away while in use; redoing the batch"
            ) from error
        raise


@contextmanager
def read_staged(manifest: BatchManifest, path: Path) -> Iterator[pl.DataFrame]:
    """The staged file a stage reads, for a block that writes the stage's own files beside it:
    gone before or during the block, the batch is redone (see staged_files_of)."""
    require_staged(manifest, path)
    with staged_files_of(manifest, path):
        yield pl.read_parquet(path, glob=False)
