"""Real Prefect servers for tests: `prefect server start` in a child process, one on SQLite and
one on the local PostgreSQL, each shared by the whole session (a start costs 10-20 s).

Use them from a client process with `client_env(server, home)`, or in this process with
`prefect.settings.temporary_settings({PREFECT_API_URL: server.api_url})`. They never depend on
the session's ephemeral `prefect_harness`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from salesflow.server import PrefectServer

# An account on the local PostgreSQL allowed to create databases (CI runs a postgres service
# with trust auth on the same address).
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def client_env(server: PrefectServer, prefect_home: Path) -> dict[str, str]:
    """Environment of a process that uses `server`: none of the session's SALESFLOW_ or PREFECT_
    settings, its own Prefect home, and the server's API URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESFLOW_", "PREFECT_"))}
    env["PREFECT_HOME"] = str(prefect_home)
    return env | server.env


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server on 127.0.0.1 and a free port, its database SQLite in a temp dir."""
    with PrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL (its postgresql:// URL), dropped after
    the session.

    Skipped when PostgreSQL is not running on a developer's machine; in CI it must be there.
    """
    name = f"salesflow_prefect_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        message = f"no PostgreSQL at {POSTGRES_ADMIN_URL} (set TEST_POSTGRES_URL): {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def with_schema(database_url: str, schema: str) -> str:
    """A database URL naming one schema, as salesflow takes it (`?schema=NAME`)."""
    return f"{database_url}{'&' if '?' in database_url else '?'}schema={schema}"


@contextmanager
def fresh_schema(database_url: str, prefix: str = "t") -> Iterator[str]:
    """`database_url` naming a new, unused schema; whatever created it, it is dropped after."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(database_url, schema)
    finally:
        with psycopg.connect(database_url, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def prefect_server_on_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrefectServer]:
    """A real Prefect server whose database is a fresh PostgreSQL database."""
    home = tmp_path_factory.mktemp("prefect-server-postgres")
    with (
        fresh_postgres_database() as database_url,
        PrefectServer(home, database_url=database_url) as server,
    ):
        yield server
