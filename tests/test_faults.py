"""OS and driver errors mapped to the fault they stand for, by errno, SQLSTATE or text."""

from __future__ import annotations

import errno

import duckdb
import psycopg
import pytest

from salesflow.errors import (
    AccessDeniedError,
    DatabaseUnreachableError,
    DiskFullError,
    RunWideError,
    UnreadableSourceError,
    WarehouseLockedError,
    WarehouseUnavailableError,
)
from salesflow.faults import Cause, Place, cause_of, classify, named_faults


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), Cause.DISK_FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), Cause.DISK_FULL),
        (OSError(errno.EROFS, "Read-only file system"), Cause.READ_ONLY),
        (PermissionError(errno.EACCES, "Permission denied"), Cause.ACCESS_DENIED),
        (duckdb.IOException("Could not write file: No space left on device"), Cause.DISK_FULL),
        (RuntimeError("parquet: File out of specification: (os error 28)"), Cause.DISK_FULL),
        (RuntimeError('could not extend file "base/1/2": wrote only 4096'), Cause.DISK_FULL),
        (
            duckdb.IOException('Could not set lock on file "w.duckdb": Conflicting lock is held'),
            Cause.LOCKED,
        ),
        (ValueError("quantity is not a number"), None),
    ],
)
def test_the_cause_is_read_from_errno_or_text(error: BaseException, cause: Cause | None) -> None:
    assert cause_of(error) == cause


def test_a_failed_rollback_does_not_hide_the_full_disk_behind_it() -> None:
    try:
        try:
            raise duckdb.IOException("Could not write file: No space left on device")
        except duckdb.Error:
            raise duckdb.TransactionException(  # noqa: B904 - chained implicitly, as DuckDB's
                "cannot rollback - no transaction is active"
            )
    except duckdb.Error as masked:
        assert cause_of(masked) == Cause.DISK_FULL


def test_a_full_warehouse_disk_names_the_cause_the_path_and_the_batch() -> None:
    fault = classify(
        OSError(errno.ENOSPC, "No space left on device"),
        Place.WAREHOUSE,
        "/srv/wh.duckdb",
        "sales_2025-02-05.csv",
    )

    assert isinstance(fault, DiskFullError)
    assert fault.exit_code == 3
    assert str(fault) == (
        "warehouse disk is full: /srv/wh.duckdb (no space left on device); nothing of "
        "sales_2025-02-05.csv was loaded"
    )


def test_read_only_denied_and_locked_are_run_wide_with_their_own_words() -> None:
    read_only = classify(OSError(errno.EROFS, "x"), Place.WAREHOUSE, "/ro/wh.duckdb")
    denied = classify(PermissionError(errno.EACCES, "x"), Place.STAGING, "/st")
    locked = classify(
        duckdb.IOException("Could not set lock on file"), Place.WAREHOUSE, "/wh.duckdb"
    )

    assert isinstance(read_only, AccessDeniedError)
    assert str(read_only) == "warehouse is not writable: /ro/wh.duckdb (read-only file system)"
    assert isinstance(denied, AccessDeniedError)
    assert str(denied) == "staging is not writable: /st (permission denied)"
    assert isinstance(locked, WarehouseLockedError)
    assert str(locked).startswith("warehouse file is held by another program: /wh.duckdb")


def test_postgres_disk_full_is_known_by_its_sqlstate() -> None:
    error = psycopg.errors.DiskFull("could not write block")

    assert error.sqlstate == "53100"
    assert isinstance(classify(error, Place.WAREHOUSE, "postgresql://h/db"), DiskFullError)


def test_an_unreachable_warehouse_after_the_retries_is_run_wide() -> None:
    lost = WarehouseUnavailableError("postgresql://h/db: PostgreSQL unreachable (refused)")

    fault = classify(lost, Place.WAREHOUSE, "postgresql://h/db")

    assert isinstance(fault, DatabaseUnreachableError)
    assert str(fault) == "postgresql://h/db: PostgreSQL unreachable (refused)"


def test_a_bad_file_is_no_fault() -> None:
    assert classify(ValueError("bad"), Place.WAREHOUSE, "/wh") is None


def test_named_faults_keeps_batch_errors_and_transient_ones_for_their_own_handling() -> None:
    unreadable = UnreadableSourceError("/in/a.csv", "cannot be opened (Permission denied)")
    lost = WarehouseUnavailableError("postgresql://h/db: lost the connection")

    for error in (unreadable, lost):
        with pytest.raises(type(error)) as raised, named_faults(Place.WAREHOUSE, "/wh"):
            raise error
        assert raised.value is error


def test_named_faults_names_a_full_disk_and_chains_the_original() -> None:
    original = OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunWideError) as raised, named_faults(Place.STAGING, "/st", "a.csv"):
        raise original

    assert isinstance(raised.value, DiskFullError)
    assert raised.value.__cause__ is original
    assert str(raised.value) == (
        "staging disk is full: /st (no space left on device); nothing of a.csv was loaded"
    )
