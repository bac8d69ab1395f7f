"""The shop's own database, for demos and tests: a realistic OLTP schema in PostgreSQL and a
seeder that fills it from the generator or from a sales file.

Every table carries `updated_at`, kept by triggers as a shop application would, so the postgres
source can extract incrementally: an insert or update sets it, deleting an order line touches its
order, and deleting an order leaves a tombstone in `deleted_orders`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from salesflow.errors import SourceUnavailableError, UsageError
from salesflow.pg_url import PostgresUrl, connect_failure, first_line
from salesflow.sources.generator import generate_day

DEFAULT_SCHEMA = "shop"

SHOP_TABLES = ("customers", "products", "orders", "order_items")

# `{s}` is the shop schema, filled in with sql.Identifier.
SHOP_DDL = (
    """
CREATE TABLE IF NOT EXISTS {s}.customers (
    customer_id  text PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.products (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    category     text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.orders (
    order_id     text PRIMARY KEY,
    customer_id  text REFERENCES {s}.customers,
    region       text NOT NULL,
    ordered_at   timestamp NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.order_items (
    order_id     text NOT NULL REFERENCES {s}.orders ON DELETE CASCADE,
    line_no      integer NOT NULL,
    sku          text NOT NULL REFERENCES {s}.products,
    quantity     integer NOT NULL,
    unit_price   numeric(12, 4) NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_no)
);
-- Deleted orders leave no updated_at behind: a tombstone each, so loads see them go.
CREATE TABLE IF NOT EXISTS {s}.deleted_orders (
    order_id     text NOT NULL,
    ordered_at   timestamp NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customers_updated_at ON {s}.customers (updated_at);
CREATE INDEX IF NOT EXISTS deleted_orders_deleted_at ON {s}.deleted_orders (deleted_at);
CREATE INDEX IF NOT EXISTS products_updated_at ON {s}.products (updated_at);
CREATE INDEX IF NOT EXISTS orders_updated_at ON {s}.orders (updated_at);
CREATE INDEX IF NOT EXISTS orders_ordered_at ON {s}.orders (ordered_at);
CREATE INDEX IF NOT EXISTS order_items_updated_at ON {s}.order_items (updated_at);
CREATE INDEX IF NOT EXISTS order_items_sku ON {s}.order_items (sku);

CREATE OR REPLACE FUNCTION {s}.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION {s}.touch_order_of_deleted_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {s}.orders SET updated_at = now() WHERE order_id = OLD.order_id;
    RETURN OLD;
END $$;
CREATE OR REPLACE FUNCTION {s}.remember_deleted_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.deleted_orders (order_id, ordered_at) VALUES (OLD.order_id, OLD.ordered_at);
    RETURN OLD;
END $$;
CREATE OR REPLACE TRIGGER orders_remember_deleted AFTER DELETE ON {s}.orders
    FOR EACH ROW EXECUTE FUNCTION {s}.remember_deleted_order();
"""
    # Every shop table keeps its own updated_at on update, as a shop application would.
    + "".join(
        f"CREATE OR REPLACE TRIGGER {table}_touch BEFORE UPDATE ON {{s}}.{table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION {s}.touch_updated_at();\n"
        for table in SHOP_TABLES
    )
    + """CREATE OR REPLACE TRIGGER order_items_touch_order AFTER DELETE ON {s}.order_items
    FOR EACH ROW EXECUTE FUNCTION {s}.touch_order_of_deleted_line();
"""
)


@contextmanager
def shop_connection(url: PostgresUrl, application_name: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the shop database; cannot connect = one line, transient or not."""
    try:
        connection = url.connect(application_name)
    except psycopg.OperationalError as error:
        raise connect_failure(url.location, error, SourceUnavailableError) from None
    with connection:
        yield connection


def init_shop(url: PostgresUrl) -> None:
    """Create the shop schema, tables, indexes and triggers that are missing."""
    schema = sql.Identifier(url.schema)
    with shop_connection(url, "salesflow-oltp") as con, con.transaction():
        try:
            con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            con.execute(sql.SQL(SHOP_DDL).format(s=schema))
        except psycopg.errors.InsufficientPrivilege as error:
            raise UsageError(f"{url.location}: {first_line(error)}") from None


def generated_sales(start: date, days: int, rows_per_day: int, seed: int) -> pl.DataFrame:
    """Clean generated sales (canonical text columns) for `days` days from `start`."""
    if days < 1:
        raise UsageError(f"days must be at least 1, got {days}")
    return pl.concat(
        generate_day(start + timedelta(days=offset), rows_per_day, seed) for offset in range(days)
    )


def sales_from_file(path: Path) -> pl.DataFrame:
    """Sales from a CSV file with the canonical header (what `salesflow generate` writes)."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise UsageError(f"{path}: cannot read it as CSV ({first_line(error)})") from None
    expected = ["order_id", "order_ts", "customer_id", "sku", "product", "category"]
    missing = [c for c in (*expected, "quantity", "unit_price", "region") if c not in frame.columns]
    if missing:
        raise UsageError(f"{path}: missing column {missing[0]!r}; seed needs the canonical header")
    return frame


def seed_shop(url: PostgresUrl, sales: pl.DataFrame) -> dict[str, int]:
    """Insert the sales as customers, products, orders and order lines (COPY, one transaction).

    An order keeps its first row's customer, region and time; a product its first name and
    category. Rows a shop database could not hold (a missing key, a non-numeric quantity)
    stop the seed with one line naming the first of them. Returns rows added per table.
    """
    tables = _shop_tables(sales)
    schema = sql.Identifier(url.schema)
    added: dict[str, int] = {}
    with shop_connection(url, "salesflow-oltp") as con, con.transaction():
        for table in SHOP_TABLES:
            frame = tables[table]
            con.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE incoming (LIKE {}.{} INCLUDING DEFAULTS) ON COMMIT DROP"
                ).format(schema, sql.Identifier(table))
            )
            columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
            buffer = io.BytesIO()
            frame.write_csv(buffer, include_header=False)
            try:
                with con.cursor().copy(
                    sql.SQL("COPY incoming ({}) FROM STDIN (FORMAT csv)").format(columns)
                ) as copy:
                    copy.write(buffer.getvalue())
                cursor = con.execute(
                    sql.SQL(
                        "INSERT INTO {}.{} ({}) SELECT {} FROM incoming ON CONFLICT DO NOTHING"
                    ).format(schema, sql.Identifier(table), columns, columns)
                )
            except psycopg.errors.UndefinedTable:
                raise UsageError(
                    f"{url.location}: no shop tables; run `salesflow oltp init` first"
                ) from None
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                raise UsageError(f"cannot seed {table}: {first_line(error)}") from None
            added[table] = cursor.rowcount
            con.execute("DROP TABLE incoming")
    return added


def _shop_tables(sales: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The four shop tables' rows from canonical sales rows (text columns)."""
    required = ("order_id", "order_ts", "sku", "product", "quantity", "unit_price", "region")
    for column in required:
        nulls = sales.get_column(column).is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0]) + 1
            raise UsageError(f"cannot seed: row {row} has no {column}")
    lines = sales.with_columns(
        line_no=pl.int_range(1, pl.len() + 1).over("order_id"),
        ordered_at=pl.col("order_ts").str.replace("T", " ", literal=True),
    )
    return {
        "customers": lines.filter(pl.col("customer_id").is_not_null())
        .select("customer_id")
        .unique(maintain_order=True),
        "products": lines.select("sku", name="product", category="category").unique(
            "sku", keep="first", maintain_order=True
        ),
        "orders": lines.select("order_id", "customer_id", "region", "ordered_at").unique(
            "order_id", keep="first", maintain_order=True
        ),
        "order_items": lines.select("order_id", "line_no", "sku", "quantity", "unit_price"),
    }
