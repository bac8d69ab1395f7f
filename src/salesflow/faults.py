"""Faults by cause: map an OS or database driver error onto the user-facing error that names it.

A full disk, a denied permission, a read-only file system, a warehouse file held by another
program or an unreachable database reach salesflow as many different exceptions (OSError with an
errno, DuckDB's IOException text, Polars' ComputeError text, psycopg's SQLSTATE classes). The
operator needs one line naming the cause and the path, and the run needs to know that no other
batch can succeed either (a RunWideError), so `classify` is asked at the first sight of one.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from salesflow.errors import (
    AccessDeniedError,
    DatabaseUnreachableError,
    DiskFullError,
    RunWideError,
    SalesflowError,
    TransientError,
    WarehouseLockedError,
    WarehouseUnavailableError,
)


class Place(StrEnum):
    """Where salesflow was writing when the fault struck: named in the message."""

    WAREHOUSE = "warehouse"
    STAGING = "staging"
    PREFECT_HOME = "Prefect home"


class Cause(StrEnum):
    DISK_FULL = "no space left on device"
    READ_ONLY = "read-only file system"
    ACCESS_DENIED = "permission denied"
    LOCKED = "held by another program"


_CAUSE_OF_ERRNO = {
    errno.ENOSPC: Cause.DISK_FULL,
    errno.EDQUOT: Cause.DISK_FULL,
    errno.EROFS: Cause.READ_ONLY,
    errno.EACCES: Cause.ACCESS_DENIED,
    errno.EPERM: Cause.ACCESS_DENIED,
}

# How the same causes read in the text of errors that carry no errno: DuckDB's IOException,
# Polars' ComputeError ("... (os error 28)"), PostgreSQL's "could not extend file".
_CAUSE_IN_TEXT = (
    ("no space left on device", Cause.DISK_FULL),
    ("os error 28", Cause.DISK_FULL),
    ("could not extend file", Cause.DISK_FULL),
    ("could not write to file", Cause.DISK_FULL),
    ("disk full", Cause.DISK_FULL),
    ("read-only file system", Cause.READ_ONLY),
    ("os error 30", Cause.READ_ONLY),
    ("permission denied", Cause.ACCESS_DENIED),
    ("os error 13", Cause.ACCESS_DENIED),
    ("could not set lock on file", Cause.LOCKED),
    ("conflicting lock is held", Cause.LOCKED),
)

# PostgreSQL's SQLSTATE for a full disk (class 53, "insufficient resources").
_PG_DISK_FULL = "53100"


def cause_of(error: BaseException) -> Cause | None:
    """The cause behind an error, from its errno, its SQLSTATE or its text; None if unknown.

    Follows `__cause__`/`__context__`, so an error raised while handling a full disk (a failed
    rollback, a wrapper) still tells the original cause.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _CAUSE_OF_ERRNO:
            return _CAUSE_OF_ERRNO[current.errno]
        if getattr(current, "sqlstate", None) == _PG_DISK_FULL:
            return Cause.DISK_FULL
        text = str(current).lower()
        for fragment, cause in _CAUSE_IN_TEXT:
            if fragment in text:
                return cause
        current = current.__cause__ or current.__context__
    return None


def classify(
    error: BaseException, place: Place, path: str, batch: str | None = None
) -> RunWideError | None:
    """The run-wide error `error` stands for, written at `path` of `place`; None when it is no
    such fault (a bad file, a bug), which the caller handles as before.

    The message names the cause and the path, and what became of the batch:
    `warehouse disk is full: /srv/wh.duckdb (no space left on device); nothing of
    sales_2025-02-05.csv was loaded`.
    """
    if isinstance(error, RunWideError):
        return error
    if isinstance(error, WarehouseUnavailableError):
        return DatabaseUnreachableError(f"{error}{_nothing_of(batch)}")
    cause = cause_of(error)
    if cause is None:
        return None
    if cause == Cause.DISK_FULL:
        return DiskFullError(f"{place} disk is full: {path} ({cause}){_nothing_of(batch)}")
    if cause == Cause.LOCKED:
        return WarehouseLockedError(
            f"{place} file is {cause}: {path} (close the other program, e.g. a DuckDB shell, "
            f"and run again){_nothing_of(batch)}"
        )
    return AccessDeniedError(f"{place} is not writable: {path} ({cause}){_nothing_of(batch)}")


def _nothing_of(batch: str | None) -> str:
    return f"; nothing of {batch} was loaded" if batch else ""


@contextmanager
def named_faults(place: Place, path: str, batch: str | None = None) -> Iterator[None]:
    """Raise the run-wide error an OS or driver error stands for, with the original chained;
    salesflow's own errors (a bad file) and unknown errors pass unchanged."""
    try:
        yield
    except SalesflowError as error:
        fault = classify(error, place, path, batch) if _wraps_fault(error) else None
        if fault is None or fault is error:
            raise
        raise fault from error
    except Exception as error:
        fault = classify(error, place, path, batch)
        if fault is None:
            raise
        raise fault from error


def _wraps_fault(error: SalesflowError) -> bool:
    """A salesflow error that only relays a full disk or a denied permission. A lost
    connection stays transient here, for the task's retries; the flow classifies it once
    they are spent."""
    if isinstance(error, TransientError):
        return False
    return error.__cause__ is not None and cause_of(error.__cause__) is not None
