"""The exceptions salesflow raises on purpose.

User errors carry a one-line message that says what is wrong, where and what to do, and an exit code
for the CLI. Transient errors (I/O hiccups, a busy warehouse) are the only ones Prefect retries.
"""

from __future__ import annotations

from salesflow.text import printable


class SalesflowError(Exception):
    """Base class of every error salesflow raises on purpose."""

    exit_code: int = 1


class UserError(SalesflowError):
    """A problem the user can fix (bad input, bad option); shown as one line, never a traceback."""


class UsageError(UserError):
    """A bad command line or configuration: a missing path, an unknown format, a bad setting."""

    exit_code = 2


class BatchError(UserError):
    """A whole batch (one source file) cannot be processed; other batches carry on.

    `.source` and `.problem` keep the real text (the warehouse records the real file name); the
    message escapes control characters, since a file name or a header from the file could
    otherwise recolour the terminal or forge a line of a summary.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{printable(str(source))}: {printable(problem)}")


class UnreadableSourceError(BatchError):
    """The file cannot be read or parsed at all (corrupt, wrong format, truncated)."""


class MissingColumnError(BatchError):
    """The file lacks a column the contract requires."""


class AmbiguousColumnError(BatchError):
    """Two input columns would fill the same canonical column, or a header repeats."""


class ReconciliationError(BatchError):
    """Counts or money of a batch do not add up; the batch is not committed."""


class LoadTimeoutError(BatchError):
    """The load ran past its time limit; the database interrupted and rolled it back."""


class RejectThresholdError(BatchError):
    """Too large a share of a batch's rows was rejected; nothing of it is loaded."""


class PrefectServerError(UserError):
    """A local Prefect server (`salesflow server up`, the test fixtures) did not start or died."""


class RunWideError(UserError):
    """A fault that no other batch can escape (the warehouse's disk is full, the warehouse or
    Prefect's API cannot be reached, permission is denied on the warehouse): the run stops
    scheduling batches, records what it can, and exits with code 3."""

    exit_code = 3


class DiskFullError(RunWideError):
    """No space left where salesflow writes (the warehouse, staging, Prefect's home)."""


class AccessDeniedError(RunWideError):
    """Permission denied, or a read-only file system, where salesflow must write."""


class WarehouseLockedError(RunWideError):
    """The warehouse file is held by a program other than salesflow (a DuckDB shell, say)."""


class DatabaseUnreachableError(RunWideError):
    """A database server (the PostgreSQL warehouse or source) cannot be reached, or keeps
    dropping the connection after the retries."""


class PrefectApiError(RunWideError):
    """Prefect's API cannot be reached or started, or its database belongs to another Prefect
    version; the message says which and how to fix it."""


class TransientError(SalesflowError):
    """A failure that may pass on its own (I/O, connection, a busy warehouse): safe to retry."""


class WarehouseBusyError(TransientError):
    """Another process holds the warehouse's write lock."""


class WarehouseUnavailableError(TransientError):
    """The warehouse's database server cannot be reached or dropped the connection (a restart,
    a terminated backend); whatever the load had done was rolled back, so it is retried."""


class SourceUnavailableError(TransientError):
    """The shop's database cannot be reached or dropped the connection mid-extract; the extract
    wrote nothing the flow uses, so it is retried."""


class PrefectUnavailableError(TransientError):
    """Prefect's API (ephemeral or a server) could not be reached or started."""


class StaleStagingError(TransientError):
    """A cached stage result names staged files that no longer exist; the batch is redone."""
