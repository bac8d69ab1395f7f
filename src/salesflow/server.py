"""A local `prefect server start` as a child process: for `salesflow server up` and for tests that
need a real API (deployments, workers, the UI) rather than the in-process ephemeral one.

The child gets its own PREFECT_HOME and port, logs to a file in that home, and is stopped with
SIGTERM (then SIGKILL after a grace period), so nothing is left running behind a test or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from pydantic import SecretStr

from salesflow.errors import PrefectServerError, UsageError
from salesflow.notify import redact

if TYPE_CHECKING:
    from salesflow.config import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
STARTUP_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 15.0
LOG_FILE = "salesflow-server.log"
LOG_LINES_IN_ERRORS = 12

_EXCEPTION_LINE = re.compile(r"^[\w.]+(?:Error|Exception|Exit)\b.*?:\s*\S")

# Schemes a user may write for the server's database, and the async driver Prefect needs for each.
_ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on right now, so several servers (tests, people) never collide."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (checked before starting, because a
    health check would otherwise be answered by that other server)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((_client_host(host), port)) == 0


def async_database_url(url: str) -> str:
    """Prefect's server talks to its database through async drivers: `postgresql://` becomes
    `postgresql+asyncpg://` (asyncpg comes with prefect); anything else is refused clearly."""
    scheme, separator, rest = url.strip().partition("://")
    driver = _ASYNC_SCHEMES.get(scheme.lower())
    if not separator or driver is None:
        raise UsageError(
            f"Prefect database URL {redact(url)!r}: expected postgresql://user:password@host/db"
        )
    return f"{driver}://{rest}"


def server_env(
    home: Path, port: int, database_url: str | None, host: str = DEFAULT_HOST
) -> dict[str, str]:
    """The Prefect settings of the server process: its own home (database, UI build, profiles),
    address, no telemetry and, when given, its database."""
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": f"http://{_url_host(_client_host(host))}:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = async_database_url(database_url)
    return env


class PrefectServer:
    """`prefect server start` in a child process, ready (answering /api/health) inside `with`:

    with PrefectServer(Path("/tmp/prefect-home")) as server:
        subprocess.run([...], env=os.environ | server.env)
    """

    def __init__(
        self,
        home: Path,
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        database_url: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
        log_level: str = "WARNING",
    ) -> None:
        self.home = Path(home).resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.database_url = database_url
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.log_level = log_level
        self.log_path = self.home / LOG_FILE
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(_client_host(self.host))}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to use this server (merge into its environment)."""
        return {"PREFECT_API_URL": self.api_url}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> PrefectServer:
        """Start the server and wait until it answers; PrefectServerError if it cannot."""
        if self._process is not None:
            raise PrefectServerError(f"Prefect server on {self.api_url} was already started")
        if port_in_use(self.host, self.port):
            raise PrefectServerError(
                f"cannot start a Prefect server on {self.host}:{self.port}: the port is already "
                "in use; choose another port or stop what listens there"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        # The caller's PREFECT_* settings (a profile, an API URL, a test harness) must not leak
        # into the server: it gets exactly the settings of server_env.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= server_env(self.home, self.port, self.database_url, self.host)
        env["PREFECT_SERVER_LOGGING_LEVEL"] = self.log_level
        command = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--analytics-off",
            "--no-prompt",  # never ask which profile to switch to
        ]
        self._log = self.log_path.open("wb")  # one start per log: its tail explains failures
        self._process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C in a terminal reaches salesflow, which then stops
            # the server in order, and stop() can signal the server with anything it spawned.
            start_new_session=True,
        )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health = f"{self.api_url}/health"
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                raise PrefectServerError(
                    f"Prefect server on {self.api_url} exited with code {code} before it was "
                    f"ready: {_cause(tail)}\nLast lines of {self.log_path}:\n{tail}"
                )
            if _answers(health):
                return
            if time.monotonic() > deadline:
                raise PrefectServerError(
                    f"Prefect server on {self.api_url} did not answer within "
                    f"{self.startup_timeout:g} s. Last lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.25)

    def log_tail(self, lines: int = LOG_LINES_IN_ERRORS) -> str:
        """The end of the server's log, passwords masked: what to show when it fails."""
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
        secrets = [self.database_url] if self.database_url else []
        return redact("\n".join(kept), secrets) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM the server's process group, wait, SIGKILL after the grace period."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_grace)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # stuck, or a second Ctrl-C
                _signal_group(process, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def server_up(
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    database_url: str | SecretStr | None = None,
    *,
    home: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run a Prefect server until Ctrl-C (or SIGTERM): the whole of `salesflow server up`.

    The CLI command only parses its options and calls this. The database is `database_url`, else
    `settings.prefect_db_url`, else SQLite in Prefect's home (`$PREFECT_HOME`, default
    ~/.prefect), so runs and deployments survive a restart. Prints where the UI and API are and
    the `export PREFECT_API_URL=...` line other terminals need.
    """
    echo = echo or _say
    chosen = database_url if database_url is not None else settings.prefect_db_url
    url = chosen.get_secret_value() if isinstance(chosen, SecretStr) else chosen
    prefect_home = home or Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    server = PrefectServer(prefect_home, host=host, port=port, database_url=url or None)
    database = redact(url) if url else f"SQLite in {server.home}"
    echo(f"starting Prefect server on {host}:{port} (database: {database}) ...")
    with server:
        echo(f"Prefect UI:  {server.ui_url}")
        echo(f"Prefect API: {server.api_url}")
        echo(f"server log:  {server.log_path}")
        echo("In another terminal, point salesflow and prefect at it:")
        echo(f"export PREFECT_API_URL={server.api_url}")
        try:  # from the line that invites Ctrl-C on, a stop signal is a clean stop
            echo("Press Ctrl-C to stop the server.")
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            echo("stopping the Prefect server ...")
            return
        raise PrefectServerError(
            f"Prefect server on {server.api_url} stopped unexpectedly. "
            f"Last lines of {server.log_path}:\n{server.log_tail()}"
        )


def _say(text: str) -> None:
    print(text, flush=True)  # at once, also when stdout is a pipe (a supervisor, a test)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _cause(log: str) -> str:
    """The last exception line of a log (what went wrong), else its last line."""
    lines = log.splitlines()
    errors = [line.strip() for line in lines if _EXCEPTION_LINE.match(line)]
    return errors[-1] if errors else (lines[-1].strip() if lines else "no output")


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on `host` (0.0.0.0 = anywhere)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
