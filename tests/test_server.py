"""A local Prefect server as a child process: it comes up on SQLite and on PostgreSQL, clients in
this and other processes use it, it fails fast and clearly when it cannot start, and
`server up` runs until Ctrl-C and then stops it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import psycopg
import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from salesflow.config import load_settings
from salesflow.errors import PrefectServerError, UsageError
from salesflow.server import (
    LOG_FILE,
    PrefectServer,
    async_database_url,
    free_port,
    server_env,
    server_up,
)
from tests.conftest import fresh_process_env
from tests.prefect_server import client_env

T = TypeVar("T")


@contextmanager
def client_of(server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """A Prefect client in this process talking to `server` (not the session's harness)."""
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        yield c


def wait_for(read: Callable[[], T | None], timeout: float = 30) -> T:
    """Poll `read` until it returns something: the server records events asynchronously."""
    deadline = time.monotonic() + timeout
    while (value := read()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout} s")
        time.sleep(0.5)
    return value


def healthy(server: PrefectServer) -> bool:
    with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as response:
        return response.status == 200 and response.read() == b"true"


@flow(name="salesflow-server-check")
def server_check(x: int) -> int:
    return x


def assert_keeps_flow_runs(server: PrefectServer) -> UUID:
    """Create a flow run through the API and read it back."""
    with client_of(server) as client:
        created = client.create_flow_run(server_check, name="round-trip", parameters={"x": 7})
        read = client.read_flow_run(created.id)
        assert (read.name, read.parameters) == ("round-trip", {"x": 7})
        assert client.read_flow(read.flow_id).name == "salesflow-server-check"
    return created.id


def test_a_server_on_sqlite_comes_up_healthy_and_keeps_flow_runs(
    prefect_server: PrefectServer,
) -> None:
    assert prefect_server.running
    assert healthy(prefect_server)
    assert prefect_server.api_url == f"http://127.0.0.1:{prefect_server.port}/api"
    assert prefect_server.env == {"PREFECT_API_URL": prefect_server.api_url}
    assert_keeps_flow_runs(prefect_server)
    assert (prefect_server.home / "prefect.db").is_file()  # SQLite, in the server's own home


def test_a_server_on_postgres_keeps_its_flow_runs_in_postgres(
    prefect_server_on_postgres: PrefectServer,
) -> None:
    server = prefect_server_on_postgres
    assert healthy(server)

    run_id = assert_keeps_flow_runs(server)

    assert server.database_url is not None
    with psycopg.connect(server.database_url) as connection:
        row = connection.execute("SELECT name FROM flow_run WHERE id = %s", [run_id]).fetchone()
    assert row == ("round-trip",)
    assert not (server.home / "prefect.db").exists()


SMOKE_FLOW = """
from prefect import flow, get_run_logger, task

@task
def double(x: int) -> int:
    return 2 * x

@flow(name="salesflow-server-smoke")
def smoke(x: int) -> int:
    get_run_logger().info("smoke says %d", x)
    return double(x)

state = smoke(21, return_state=True)
print(state.state_details.flow_run_id, state.result())
"""


def test_a_flow_run_in_another_process_is_recorded_with_its_tasks_and_logs(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SMOKE_FLOW],
        env=client_env(prefect_server, tmp_path / "client-home"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run_id, result = done.stdout.split()
    assert result == "42"
    # The client used the server, not an ephemeral API of its own.
    assert not (tmp_path / "client-home" / "prefect.db").exists()

    with client_of(prefect_server) as client:
        flow_run = client.read_flow_run(UUID(run_id))
        assert flow_run.state is not None and flow_run.state.is_completed()
        assert flow_run.parameters == {"x": 21}
        only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))

        def completed_task_runs() -> list[TaskRun] | None:
            task_runs = client.read_task_runs(flow_run_filter=only_this_run)
            done = [run for run in task_runs if run.state and run.state.is_completed()]
            return done or None

        task_runs = wait_for(completed_task_runs)
        assert [task_run.name.split("-")[0] for task_run in task_runs] == ["double"]
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        assert "smoke says 21" in [log.message for log in logs]


def test_a_port_already_in_use_is_a_clear_error_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = PrefectServer(tmp_path / "home", port=port)
        started = time.monotonic()

        with pytest.raises(PrefectServerError, match=f"127.0.0.1:{port}: the port is already"):
            server.start()

    assert time.monotonic() - started < 5
    assert not server.running


def test_a_server_that_cannot_reach_its_database_fails_fast_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"postgresql://postgres:NOT-THIS-PASSWORD@127.0.0.1:{free_port()}/prefect"
    monkeypatch.setenv("SALESFLOW_PREFECT_DB_URL", database)  # what `server up` falls back on
    port = free_port()
    printed: list[str] = []
    started = time.monotonic()

    with pytest.raises(PrefectServerError) as raised:
        server_up(load_settings(), port=port, home=tmp_path / "home", echo=printed.append)

    assert time.monotonic() - started < 60  # it noticed the exit, not a 120 s timeout
    message = str(raised.value)
    first_line = message.splitlines()[0]
    assert f"Prefect server on http://127.0.0.1:{port}/api exited with code" in first_line
    assert "Connect call failed" in first_line  # the cause, not just "it failed"
    assert str(tmp_path / "home" / LOG_FILE) in message
    masked = database.replace("NOT-THIS-PASSWORD", "***")
    assert printed == [f"starting Prefect server on 127.0.0.1:{port} (database: {masked}) ..."]
    assert "NOT-THIS-PASSWORD" not in message + "".join(printed)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/prefect", "postgresql+asyncpg://u:p@db:5432/prefect"),
        ("postgres://u@db/prefect", "postgresql+asyncpg://u@db/prefect"),
        ("postgresql+psycopg://u@db/prefect", "postgresql+asyncpg://u@db/prefect"),
        ("postgresql+asyncpg://u@db/prefect", "postgresql+asyncpg://u@db/prefect"),
        ("sqlite:////tmp/prefect.db", "sqlite+aiosqlite:////tmp/prefect.db"),
    ],
)
def test_database_urls_get_the_async_driver_prefect_needs(given: str, expected: str) -> None:
    assert async_database_url(given) == expected


def test_an_unsupported_database_url_is_a_usage_error_without_its_password() -> None:
    with pytest.raises(UsageError, match=r"mysql://root:\*\*\*@db/x") as raised:
        async_database_url("mysql://root:hunter22@db/x")
    assert "hunter22" not in str(raised.value)


def test_server_env_holds_exactly_the_server_settings(tmp_path: Path) -> None:
    env = server_env(tmp_path, 4321, "postgresql://u:p@db/prefect")

    assert env == {
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": "4321",
        "PREFECT_API_URL": "http://127.0.0.1:4321/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@db/prefect",
    }
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in server_env(tmp_path, 4321, None)


SERVER_UP = """
import sys
from salesflow.config import load_settings
from salesflow.server import server_up
server_up(load_settings(), port=int(sys.argv[1]))
print("returned", flush=True)
"""


def test_server_up_prints_where_the_server_is_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "prefect-home"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_UP, str(port)],
        env=fresh_process_env(home),  # no PREFECT_API_URL: it starts a server, not uses one
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = []
        deadline = time.monotonic() + 150
        while not printed or not printed[-1].startswith("Press Ctrl-C"):
            assert time.monotonic() < deadline, printed
            line = process.stdout.readline()
            assert line, f"server up ended early: {printed}"
            printed.append(line.strip())
        api = f"http://127.0.0.1:{port}/api"
        assert f"Prefect UI:  http://127.0.0.1:{port}" in printed
        assert f"export PREFECT_API_URL={api}" in printed
        with urllib.request.urlopen(f"{api}/health", timeout=5) as response:
            assert response.status == 200

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert rest.splitlines()[-1] == "returned"
    with socket.socket() as probe:  # the server is gone with it, the port free again
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert (home / "prefect.db").is_file()  # SQLite in Prefect's home: kept for the next start
