"""PostgreSQL URLs as salesflow takes them, for the warehouse and for the shop's source database.

A URL names a database and a schema (`postgresql://user@host/db?schema=NAME`). What salesflow
passes around and logs (flow parameters, the `batches` table) is its `location`: the URL without
any password. A password given in the URL stays in this process, in a registry keyed by location,
so a task that reopens the database by its location connects with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from salesflow.errors import UsageError

URL_SCHEMES = ("postgresql", "postgres")
# Lower case only: an unquoted name in psql means the same table as the quoted one here.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
CONNECT_TIMEOUT_SECONDS = 10


def is_postgres_url(location: str) -> bool:
    """Whether `location` is a postgresql:// or postgres:// URL."""
    return "://" in location and location.split("://", 1)[0].lower() in URL_SCHEMES


def first_line(error: BaseException) -> str:
    """An exception's message on one line, for a one-line user error."""
    return " ".join(str(error).split()) or type(error).__name__


# Words of a connection failure that settings cause (a wrong database, role or password): the
# user's to fix. Any other failure (refused, reset, timed out) may pass, so it is retried.
_SETTINGS_PROBLEMS = ("does not exist", "authentication", "password", "pg_hba", "invalid")


def connect_failure(
    location: str, error: psycopg.OperationalError, transient: type[Exception]
) -> Exception:
    """The salesflow error for a failed connection: UsageError for wrong settings, else
    `transient` (which the tasks retry)."""
    problem = first_line(error)
    if any(words in problem for words in _SETTINGS_PROBLEMS):
        return UsageError(f"{location}: cannot connect to PostgreSQL ({problem})")
    return transient(f"{location}: PostgreSQL unreachable ({problem})")


def secret_parameters(url: str) -> list[str]:
    """The names of the secrets a URL carries (a `user:password@` part, `password=` or
    `sslpassword=` parameters): none may reach settings that Prefect stores."""
    parts = urlsplit(url)
    found = ["password"] if parts.password is not None else []
    found += [
        k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if k in SECRET_PARAMETERS
    ]
    return found


@dataclass(frozen=True)
class PostgresUrl:
    """A parsed URL: `location` is safe to log, `conninfo` and `secrets` are what connects."""

    location: str
    conninfo: str
    schema: str
    secrets: dict[str, str] = field(repr=False)
    # Whether salesflow may name its connections (the user did not set application_name).
    may_set_application_name: bool = True

    _secrets_of: ClassVar[dict[str, dict[str, str]]] = {}

    @classmethod
    def parse(cls, url: str, default_schema: str) -> PostgresUrl:
        """Parse and check `url`; a bad one is a UsageError that never echoes a password."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in URL_SCHEMES:
            # Not echoed: whatever it is, it may hold a password.
            raise UsageError("not a PostgreSQL URL: expected postgresql://user@host/db")
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        schema = schemas[-1] if schemas else default_schema
        userinfo, at, hosts = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        kept = [(k, v) for k, v in query if k != "schema" and k not in SECRET_PARAMETERS]
        secrets = {k: v for k, v in query if k in SECRET_PARAMETERS}
        netloc = f"{user}{at}{hosts}"
        location = urlunsplit(
            ("postgresql", netloc, parts.path, urlencode([*kept, ("schema", schema)]), "")
        )
        if not SCHEMA_NAME.fullmatch(schema):
            raise UsageError(
                f"{location}: schema {schema!r} is not a plain name (lower-case letters, "
                "digits and _, not starting with a digit, at most 63 characters)"
            )
        conninfo = urlunsplit(("postgresql", netloc, parts.path, urlencode(kept), ""))
        try:
            parameters = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as error:
            raise UsageError(f"{location}: bad PostgreSQL URL ({first_line(error)})") from None
        if colon:
            secrets.setdefault("password", unquote(password))
        if secrets:
            cls._secrets_of[location] = secrets
        return cls(
            location=location,
            conninfo=conninfo,
            schema=schema,
            secrets=secrets or cls._secrets_of.get(location, {}),
            may_set_application_name="application_name" not in parameters,
        )

    def connect(self, application_name: str, autocommit: bool = False) -> psycopg.Connection[Any]:
        """A new connection; the password from the URL given in this process, or from libpq
        (PGPASSWORD, ~/.pgpass). psycopg's errors are the caller's to map."""
        extra: dict[str, Any] = dict(self.secrets)
        if self.may_set_application_name:
            extra["application_name"] = application_name
        return psycopg.connect(
            self.conninfo, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_SECONDS, **extra
        )
