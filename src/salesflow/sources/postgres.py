"""The shop's PostgreSQL database as a source: order lines, extracted incrementally by day.

A run asks which order days changed since the watermark (minus a lag window for transactions
that committed late), then extracts each changed day whole, with COPY streamed to a CSV file in
the canonical columns. Each day is one batch, so the flow's atomic batch replace makes the
warehouse's copy of the day equal to the source's: an updated line replaces its earlier version
(order lines are keyed by order and line number), a new line is added, a deleted line goes, and
an order that moved to another day leaves the old one (that day is extracted too). An unchanged
day extracts to the same bytes, and the flow skips it by its sha256.

Memory stays bounded: COPY hands over the rows in chunks that go straight to the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from salesflow.errors import SourceUnavailableError, UsageError
from salesflow.pg_url import PostgresUrl, first_line
from salesflow.sources.shop import DEFAULT_SCHEMA, shop_connection

# How the source's connections show in pg_stat_activity.
DISCOVER_APPLICATION = "salesflow-discover"
EXTRACT_APPLICATION = "salesflow-extract"
LOCK_APPLICATION = "salesflow-oltp-lock"

# Orders (id and order day) whose lines, order or product changed after a time, and orders
# deleted since then (from their tombstones).
_CHANGED_ORDERS = """
WITH changed AS (
    SELECT order_id FROM {s}.orders WHERE updated_at > %(since)s
    UNION SELECT order_id FROM {s}.order_items WHERE updated_at > %(since)s
    UNION SELECT i.order_id FROM {s}.order_items i JOIN {s}.products p ON p.sku = i.sku
          WHERE p.updated_at > %(since)s
)
SELECT o.order_id, o.ordered_at::date FROM {s}.orders o JOIN changed USING (order_id)
UNION SELECT order_id, ordered_at::date FROM {s}.deleted_orders WHERE deleted_at > %(since)s
ORDER BY 1, 2
"""

_HIGH_WATER = """
SELECT greatest(
    (SELECT max(updated_at) FROM {s}.orders),
    (SELECT max(updated_at) FROM {s}.order_items),
    (SELECT max(updated_at) FROM {s}.products),
    (SELECT max(deleted_at) FROM {s}.deleted_orders))
"""

# Every order day the source has held: those with orders, and those whose orders were deleted.
_ALL_DAYS = """
SELECT ordered_at::date FROM {s}.orders
UNION SELECT ordered_at::date FROM {s}.deleted_orders
ORDER BY 1
"""

# One day's order lines in the canonical columns, in a stable order: the same rows give the
# same bytes. source_row in the warehouse is the line's position in this order.
_DAY_LINES = """
COPY (
    SELECT o.order_id,
           to_char(o.ordered_at, 'YYYY-MM-DD"T"HH24:MI:SS.US') AS order_ts,
           o.customer_id, i.sku, p.name AS product, p.category, i.quantity, i.unit_price,
           o.region
    FROM {s}.orders o
    JOIN {s}.order_items i ON i.order_id = o.order_id
    JOIN {s}.products p ON p.sku = i.sku
    WHERE o.ordered_at >= %(day)s AND o.ordered_at < %(next_day)s
    ORDER BY o.order_id, i.line_no
) TO STDOUT (FORMAT csv, HEADER)
"""


@dataclass(frozen=True)
class Changes:
    """What a discovery found: the days to extract and the watermark once they are loaded."""

    days: list[date]
    high_water: datetime | None  # the latest updated_at seen; None for an empty source
    changed_orders: list[str]  # empty on a first run, when every day is extracted anyway


class PostgresSource:
    """Order lines of a shop schema (see salesflow.sources.shop) at a PostgreSQL URL."""

    def __init__(self, location: str) -> None:
        self.url = PostgresUrl.parse(location, DEFAULT_SCHEMA)
        self.location = self.url.location
        self._schema = sql.Identifier(self.url.schema)

    def __repr__(self) -> str:
        return f"PostgresSource({self.location!r})"

    @property
    def batch_prefix(self) -> str:
        """What the names of this source's batches start with: the schema, for people, and a
        digest of the whole location, so two shops with the same schema name never share
        batches (nor does one schema's prefix start another's)."""
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:8]
        return f"pg_{self.url.schema}_{digest}_"

    @contextmanager
    def one_load_at_a_time(self) -> Iterator[None]:
        """Hold this source's advisory lock (in the shop database) while a load runs: two loads
        of one source at once could commit an older extract of a day after a newer one."""
        key = int.from_bytes(
            hashlib.sha256(b"salesflow-oltp:" + self.location.encode()).digest()[:8],
            "big",
            signed=True,
        )
        with self._session(LOCK_APPLICATION) as con:
            con.autocommit = True
            con.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                yield
            finally:
                con.execute("SELECT pg_advisory_unlock(%s)", [key])

    def batch_name(self, day: date) -> str:
        """The batch (and extracted file) name of one day of this source."""
        return f"{self.batch_prefix}{day.isoformat()}.csv"

    def day_of(self, batch_name: str) -> date:
        """The day of one of this source's batch names (see batch_name)."""
        return date.fromisoformat(batch_name.removeprefix(self.batch_prefix).removesuffix(".csv"))

    def discover(self, since: datetime | None) -> Changes:
        """Days holding an order changed after `since` (every day when None), in one snapshot
        with the high-water mark, so nothing committed between the two is missed."""
        with self._session(DISCOVER_APPLICATION) as con:
            con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            con.read_only = True
            with con.transaction():
                high_water = con.execute(self._sql(_HIGH_WATER)).fetchone()
                if since is None:
                    rows = con.execute(self._sql(_ALL_DAYS)).fetchall()
                    return Changes([row[0] for row in rows], _first(high_water), [])
                changed = con.execute(self._sql(_CHANGED_ORDERS), {"since": since}).fetchall()
        days = sorted({row[1] for row in changed})
        return Changes(days, _first(high_water), sorted({row[0] for row in changed}))

    def extract_day(self, day: date, target: Path) -> Path:
        """Write one day's order lines to `target` as CSV in the canonical columns.

        Written to a temporary name and renamed, so a dropped connection never leaves a
        partial file behind for the flow to load.
        """
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with (
                self._session(EXTRACT_APPLICATION) as con,
                con.cursor().copy(
                    self._sql(_DAY_LINES), {"day": day, "next_day": day + timedelta(days=1)}
                ) as copy,
                partial.open("wb") as out,
            ):
                for chunk in copy:
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(s=self._schema)

    @contextmanager
    def _session(self, application_name: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose failures read as salesflow's: a dropped or refused connection is
        transient (the task retries), a missing table or bad SQL is the user's to fix."""
        with shop_connection(self.url, application_name) as con:
            try:
                yield con
            except psycopg.errors.UndefinedTable as error:
                raise UsageError(
                    f"{self.location}: {first_line(error)}; is this a shop schema "
                    "(`salesflow oltp init`)?"
                ) from None
            except (psycopg.errors.UndefinedColumn, psycopg.errors.SyntaxError) as error:
                raise UsageError(f"{self.location}: {first_line(error)}") from None
            except psycopg.OperationalError as error:
                raise SourceUnavailableError(
                    f"{self.location}: lost the connection to PostgreSQL ({first_line(error)})"
                ) from error


def _first(row: tuple[Any, ...] | None) -> Any:
    return row[0] if row is not None else None
