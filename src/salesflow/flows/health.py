"""Prefect-side faults, found before they turn into minutes of retries or a traceback.

Each fault below used to cost the operator time and hide its cause: Prefect's ephemeral API on a
database migrated by a newer Prefect, or in a home on a full disk, never starts, and the command
says "Timed out while attempting to connect to ephemeral Prefect API server" after 3 minutes; a
`PREFECT_API_URL` where nothing listens, or a server that dies during a run, sends Prefect's
client into exponential retries (2, 4, ... 1024 s). The checks here take milliseconds to a few
seconds, run before Prefect starts anything, and raise one salesflow error naming the cause, the
path or URL and the fix:

- `PrefectApiError` (run-wide, exit code 3): the API is unreachable, stopped answering during a
  run, or its local database belongs to another Prefect version.
- `DiskFullError` (run-wide, exit code 3): Prefect's home has no space left.

Prefect is imported only inside the functions (its settings, once a command needs Prefect
anyway), never at module import: the CLI imports lazily and `--help` stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from salesflow.errors import DiskFullError, PrefectApiError, SalesflowError

# Below this much free space in Prefect's home its SQLite database cannot even be created or
# migrated (a fresh one is about 1.5 MB), and the ephemeral API would time out after minutes.
MIN_FREE_BYTES = 1024 * 1024
# One health request: the API answers in milliseconds when it is up; a port where nothing
# listens refuses at once; a host that drops packets is given this long.
HEALTH_TIMEOUT_SECONDS = 3.0
# During a run against a server: how often the watchdog asks, how long the API may stay silent
# before the run is stopped, and how long the run then has to stop by itself before the process
# exits (Prefect's client would otherwise retry each call for up to 2 + 4 + ... + 1024 s).
WATCH_INTERVAL_SECONDS = 1.0
WATCH_SILENCE_SECONDS = 5.0
WATCH_EXIT_GRACE_SECONDS = 10.0

_REVISION_LINE = re.compile(r"""^revision\s*(?::\s*str\s*)?=\s*["'](\w+)["']""", re.MULTILINE)


@dataclass(frozen=True)
class PrefectTarget:
    """Where this process's Prefect calls go: a server's URL, or the ephemeral API on the
    database at `database_url` in `home`."""

    api_url: str | None
    home: Path
    database_url: str


def prefect_target() -> PrefectTarget:
    """Prefect's own view of its settings (environment, profile, defaults): the same values the
    client and the ephemeral server will use, so the checks look at the right URL and file."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    secret = settings.server.database.connection_url
    database_url = secret.get_secret_value() if secret is not None else ""
    return PrefectTarget(settings.api.url or None, Path(settings.home), database_url)


def check_prefect() -> PrefectTarget:
    """Check what the next Prefect calls need, before any is made; raise the error naming the
    fault. A server URL must answer; without one (the ephemeral API), Prefect's home must have
    space and its database must be one this Prefect can migrate."""
    target = prefect_target()
    if target.api_url is not None:
        check_api_reachable(target.api_url)
    else:
        check_home_space(target.home)
        check_local_database(target.database_url)
    return target


# -- the API -------------------------------------------------------------------------------------


def api_problem(url: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> str | None:
    """Why the API at `url` cannot be reached (`connection refused`, `timed out`), or None.

    A plain HTTP request to `<url>/health`, not Prefect's client: the client retries a refused
    connection with exponential backoff once it has connected before, which is minutes. Any HTTP
    answer counts as reachable (a 401 or 404 from a proxy or Prefect Cloud is not this fault).
    """
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, OSError):
            return _os_reason(reason)
        return str(reason)
    except (TimeoutError, OSError) as error:
        return _os_reason(error)
    except ValueError as error:  # not a URL at all
        return f"not a valid URL: {error}"


def check_api_reachable(url: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
    """Raise PrefectApiError when nothing answers at `url`, at once rather than after retries."""
    problem = api_problem(url, timeout)
    if problem is not None:
        raise PrefectApiError(unreachable_message(url, problem))


def unreachable_message(url: str, problem: str) -> str:
    return (
        f"Prefect API unreachable at {url} ({problem}); start the server (`salesflow server "
        "up`) or fix PREFECT_API_URL (unset it to use Prefect's ephemeral API)"
    )


def _os_reason(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s"
    return (error.strerror or str(error)).lower()


# -- Prefect's home and its local database -------------------------------------------------------


def check_home_space(home: Path, minimum: int = MIN_FREE_BYTES) -> None:
    """Raise DiskFullError when Prefect's home (its SQLite database, results, logs) has less
    than `minimum` bytes free: the ephemeral API would not start, and say only that it timed
    out."""
    folder = home
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # Prefect creates the home; its disk is the nearest existing one
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < minimum:
        raise DiskFullError(disk_full_message(home, free))


def disk_full_message(home: Path, free: int | None = None) -> str:
    left = f", {free // 1024} KiB free" if free is not None else ""
    return (
        f"Prefect home disk is full: {home} (no space left on device{left}); free space there, "
        "or set PREFECT_HOME to a folder on another disk"
    )


def sqlite_path(database_url: str) -> Path | None:
    """The file of a `sqlite+aiosqlite:///...` URL; None for PostgreSQL or an in-memory database."""
    scheme, separator, rest = database_url.partition(":///")
    if not separator or not scheme.startswith("sqlite"):
        return None
    path = urllib.parse.unquote(rest.split("?", 1)[0])
    if not path or path.startswith(("file::memory:", ":memory:")):
        return None
    return Path(path)  # as SQLAlchemy reads it: `sqlite:///x.db` is relative to the folder


def database_revision(path: Path) -> str | None:
    """The alembic revision recorded in a Prefect SQLite database; None when the file does not
    exist yet or holds no revision (Prefect creates and migrates it on start). Opened read-only,
    so the check never takes a write lock another Prefect process waits for."""
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None  # no alembic_version table yet, or not readable: Prefect's start says more
    return str(row[0]) if row else None


def known_revisions(dialect: str = "sqlite") -> set[str]:
    """The alembic revisions the installed Prefect ships, read from its migration files (what
    Prefect's `versions_dir` points alembic at) without importing Prefect's server."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        return set()
    versions = Path(spec.origin).parent / "server" / "database" / "_migrations" / "versions"
    revisions: set[str] = set()
    for script in (versions / dialect).glob("*.py"):
        match = _REVISION_LINE.search(script.read_text(encoding="utf-8", errors="replace"))
        if match:
            revisions.add(match.group(1))
    return revisions


def check_local_database(database_url: str) -> None:
    """Raise PrefectApiError when Prefect's SQLite database carries a revision the installed
    Prefect does not know: a newer Prefect migrated it, and this one cannot start on it (its
    ephemeral API then times out after minutes, saying nothing of why)."""
    path = sqlite_path(database_url)
    if path is None:
        return
    revision = database_revision(path)
    if revision is None:
        return
    known = known_revisions()
    if known and revision not in known:
        raise PrefectApiError(foreign_database_message(path, revision))


def foreign_database_message(path: Path, revision: str) -> str:
    from importlib.metadata import version

    return (
        f"Prefect's database {path} was migrated by another Prefect version (alembic revision "
        f"{revision}, unknown to the installed prefect {version('prefect')}); use a separate "
        "PREFECT_HOME for this salesflow, or the newer Prefect (`prefect server database "
        "upgrade` with it)"
    )


# -- errors Prefect raises once a command is under way --------------------------------------------


def prefect_fault(error: BaseException) -> SalesflowError | None:
    """The salesflow error an exception out of Prefect stands for, or None (then it is not a
    Prefect fault and goes on as it was). Called when a command fails: the checks above run
    before Prefect starts, this catches what happens after (Prefect's home filling up meanwhile:
    SQLite's "database or disk is full", an ENOSPC writing there). salesflow's own errors are
    not asked: a full warehouse or staging disk is named where it happens."""
    if isinstance(error, SalesflowError):
        return None
    try:
        home = prefect_target().home
    except Exception:
        home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    full = _enospc(error)
    if full is not None and full.filename and not _inside(Path(str(full.filename)), home):
        return DiskFullError(f"disk is full: {full.filename} (no space left on device)")
    if full is not None or "database or disk is full" in str(error).lower():
        return DiskFullError(disk_full_message(home))
    return None


def _enospc(error: BaseException) -> OSError | None:
    """The ENOSPC OSError behind `error` (itself, its cause or context), if any."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        current = current.__cause__ or current.__context__
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


# -- a run against a server that dies -----------------------------------------------------------


class ApiWatchdog:
    """Watches the API a run talks to, from a daemon thread.

    When the server dies mid-run, every Prefect call of the run (task states, logs, results)
    retries a refused connection with exponential backoff: the run would hang for many minutes.
    After `silence` seconds without an answer the watchdog interrupts the main thread with a
    SIGINT, as Ctrl-C would (the load in progress rolls back or has committed: both leave a batch
    that balances), and the command ends with `fault`. Worker threads stuck in those retries would
    still hold the process at exit, so `grace` seconds later the watchdog ends the process with
    the fault's exit code, printing the message unless the command already did: like `kill -9`
    of a run, which leaves the warehouse readable and a re-run completes it.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: float = WATCH_INTERVAL_SECONDS,
        silence: float = WATCH_SILENCE_SECONDS,
        grace: float = WATCH_EXIT_GRACE_SECONDS,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.silence = silence
        self.grace = grace
        self.say = say or _say
        self.fault: PrefectApiError | None = None
        self.reported = False  # the command took the fault over and prints it
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="salesflow-api-watch", daemon=True)

    def start(self) -> ApiWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The run ended: stop watching (a fault already raised keeps its exit deadline)."""
        self._done.set()

    def _watch(self) -> None:
        silent_since: float | None = None
        while not self._done.wait(self.interval):
            problem = api_problem(self.url, timeout=min(HEALTH_TIMEOUT_SECONDS, self.silence))
            if problem is None:
                silent_since = None
                continue
            now = time.monotonic()
            silent_since = silent_since if silent_since is not None else now
            if now - silent_since < self.silence:
                continue
            self.fault = PrefectApiError(
                f"Prefect API at {self.url} stopped answering during the run ({problem}); the "
                "run was stopped: batches committed before stay loaded, the others were not; "
                "start the server again and re-run the same command"
            )
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(self.grace)  # a daemon thread: a process that ends meanwhile just ends
            if not self.reported:
                self.say(f"error: {self.fault}")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.fault.exit_code)


@contextmanager
def watching_api(
    url: str | None,
    *,
    silence: float = WATCH_SILENCE_SECONDS,
    grace: float = WATCH_EXIT_GRACE_SECONDS,
) -> Iterator[ApiWatchdog | None]:
    """Run the body under an ApiWatchdog of `url` (nothing for the ephemeral API, which lives in
    this process); a KeyboardInterrupt the watchdog caused becomes its PrefectApiError."""
    if url is None:
        yield None
        return
    watchdog = ApiWatchdog(url, silence=silence, grace=grace).start()
    # Prefect's log shipper writes "--- Error logging to API ---" and the error to stderr for
    # each batch of logs it cannot send, as stdlib logging does while `raiseExceptions` is on:
    # with the server gone that is noise around the one line that says what happened.
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        yield watchdog
    except BaseException as error:
        if watchdog.fault is None:
            raise
        watchdog.reported = True
        if isinstance(error, KeyboardInterrupt):  # the watchdog's own SIGINT
            raise watchdog.fault from None
        raise watchdog.fault from error  # the body failed on the dead API before the SIGINT
    finally:
        watchdog.stop()
        logging.raiseExceptions = raise_exceptions


def exit_later(seconds: float, error: SalesflowError) -> threading.Timer:
    """End the process `seconds` from now with `error`'s line and exit code, unless it has ended
    by then: the bound on a shutdown whose last Prefect calls would retry for minutes."""

    def end() -> None:
        _say(f"error: {error}")
        sys.stdout.flush()
        os._exit(error.exit_code)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    return timer


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
