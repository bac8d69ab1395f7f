"""The data contract of a sales record: one source of truth for columns, reason codes and types.

Readers map input headers onto the canonical columns here, the validator emits only the reason
codes declared here, and the Pandera model checks every batch before it reaches the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandera.polars as pa
import polars as pl

CONTRACT_VERSION: Final = "1.1"

# Columns a staged batch carries beside the canonical ones; validation reads them, the
# warehouse keeps SOURCE_ROW, and none of them is ever a column of `sales`.
SOURCE_ROW: Final = "__source_row"
"""Column added to every staged batch: the 1-based index of the data record in its file."""
FIELD_COUNT: Final = "__field_count"
"""Column of a staged CSV batch: how many fields the record had (null for other formats)."""
RECORD_TEXT: Final = "__record_text"
"""Column of a staged JSON Lines batch: the text of a line that is not a JSON object, else null."""
INTERNAL_COLUMNS: Final = (SOURCE_ROW, FIELD_COUNT, RECORD_TEXT)

# What an order line says about who bought what at which price: the middle of both the canonical
# input columns and the `sales` table's.
_LINE_COLUMNS: Final = ("customer_id", "sku", "product", "category", "quantity", "unit_price")

# Canonical input columns, in the order salesflow writes them.
CANONICAL_COLUMNS: Final = ("order_id", "order_ts", *_LINE_COLUMNS, "region")

# A row lacking any of these is rejected with `missing_<column>`.
REQUIRED_VALUES: Final = ("order_id", "sku", "order_ts", "quantity", "unit_price", "region")

# A file lacking any of these columns (after aliasing and derivation) fails as a batch.
# order_id is derived and sku copied from product when absent, so neither is listed.
REQUIRED_COLUMNS: Final = ("order_ts", "quantity", "unit_price", "region")

# Header aliases, matched after trimming and lower-casing. The course CSV this product grew from
# uses Spanish headers; `producto` fills both product and sku.
COLUMN_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "order_id": ("order_id", "orderid", "order", "pedido", "id_pedido"),
    "order_ts": ("order_ts", "order_date", "timestamp", "date", "fecha"),
    "customer_id": ("customer_id", "customerid", "customer", "cliente", "id_cliente"),
    "sku": ("sku", "product_id", "codigo"),
    "product": ("product", "product_name", "producto"),
    "category": ("category", "categoria"),
    "quantity": ("quantity", "qty", "cantidad"),
    "unit_price": ("unit_price", "price", "unitprice", "precio_unitario", "precio"),
    "region": ("region", "región", "zone", "zona"),
}


def check_timezone(value: str) -> str:
    """A time zone both the OS and Polars know (shared by settings and source profiles)."""
    try:
        ZoneInfo(value)
        # Polars does the conversions and knows fewer zones than the OS (no "Factory").
        pl.Series([datetime(2024, 1, 1)]).dt.replace_time_zone(value)
    except (ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError) as error:
        raise ValueError(f"unknown time zone {value!r}") from error
    return value


def check_timestamp_format(value: str) -> str:
    """A strptime format, not a sample date someone pasted by mistake."""
    if "%" not in value:
        raise ValueError(f"{value!r} is not a strptime format (e.g. '%d/%m/%Y %H:%M')")
    return value


class Reason(StrEnum):
    """Machine-readable reason codes stored in `sales_rejected.reasons`, in the order applied."""

    RAGGED_ROW = "ragged_row"
    MALFORMED_RECORD = "malformed_record"
    BAD_ENCODING = "bad_encoding"
    FIELD_TOO_LONG = "field_too_long"
    MISSING_ORDER_ID = "missing_order_id"
    MISSING_SKU = "missing_sku"
    MISSING_ORDER_TS = "missing_order_ts"
    MISSING_QUANTITY = "missing_quantity"
    MISSING_UNIT_PRICE = "missing_unit_price"
    MISSING_REGION = "missing_region"
    BAD_TYPE_ORDER_TS = "bad_type:order_ts"
    BAD_TYPE_QUANTITY = "bad_type:quantity"
    BAD_TYPE_UNIT_PRICE = "bad_type:unit_price"
    ZERO_QUANTITY = "zero_quantity"
    NEGATIVE_PRICE = "negative_price"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    PRICE_OUT_OF_RANGE = "price_out_of_range"
    BEFORE_MIN_DATE = "before_min_date"
    FUTURE_DATE = "future_date"
    UNKNOWN_REGION = "unknown_region"
    DUPLICATE = "duplicate"
    DUPLICATE_IN_WAREHOUSE = "duplicate_in_warehouse"


REASON_DESCRIPTIONS: Final[dict[Reason, str]] = {
    Reason.RAGGED_ROW: "the CSV record has more or fewer fields than the header",
    Reason.MALFORMED_RECORD: "the JSON Lines line is not a JSON object (malformed or cut-off "
    "JSON, a bare array, number or string, bytes that are not UTF-8); kept whole in `raw`",
    Reason.BAD_ENCODING: "the record holds bytes that are not UTF-8 (e.g. latin-1) or NUL",
    Reason.FIELD_TOO_LONG: "a field is longer than `max_field_length` characters",
    Reason.MISSING_ORDER_ID: "order_id is empty",
    Reason.MISSING_SKU: "sku is empty (and no product to take it from)",
    Reason.MISSING_ORDER_TS: "order_ts is empty",
    Reason.MISSING_QUANTITY: "quantity is empty",
    Reason.MISSING_UNIT_PRICE: "unit_price is empty",
    Reason.MISSING_REGION: "region is empty",
    Reason.BAD_TYPE_ORDER_TS: "order_ts is not an ISO 8601 date or timestamp (nor in "
    "`timestamp_format` when that is set)",
    Reason.BAD_TYPE_QUANTITY: "quantity is not a whole number (e.g. '2.5', 'two')",
    Reason.BAD_TYPE_UNIT_PRICE: "unit_price is not a plain decimal with at most 4 places "
    "(e.g. '12,50', '1e3')",
    Reason.ZERO_QUANTITY: "quantity is 0",
    Reason.NEGATIVE_PRICE: "unit_price is below 0",
    Reason.QUANTITY_OUT_OF_RANGE: "|quantity| is above `max_quantity`",
    Reason.PRICE_OUT_OF_RANGE: "unit_price is above `max_unit_price`",
    Reason.BEFORE_MIN_DATE: "order_ts is before `min_order_date`",
    Reason.FUTURE_DATE: "order_ts is later than now plus `future_tolerance_hours`",
    Reason.UNKNOWN_REGION: "region is not one of `regions` (checked only when that is set)",
    Reason.DUPLICATE: "exact copy of an earlier row of the same batch (the first is kept)",
    Reason.DUPLICATE_IN_WAREHOUSE: "identical in every contract field to a row already loaded "
    "from another batch (`reject_duplicates_in_warehouse`)",
}

# Money is exact: DECIMAL(18,4) everywhere, never float.
MONEY: Final = pl.Decimal(18, 4)

TICKET_SIZES: Final = ("return", "low", "medium", "high", "very_high")
WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Columns of the `sales` table, in order: the canonical ones with the derived columns among them,
# then where each row came from.
SALES_COLUMNS: Final = (
    "order_id",
    "order_ts",
    "order_date",
    *_LINE_COLUMNS,
    "total",
    "ticket_size",
    "month",
    "weekday",
    "region",
    "batch_id",
    "source_row",
)


class SalesRecord(pa.DataFrameModel):
    """What a row of `sales` must look like; checked on every transformed batch before loading."""

    order_id: str = pa.Field(nullable=False, str_length={"min_value": 1})
    order_ts: Annotated[pl.Datetime, "us", None] = pa.Field(nullable=False)
    order_date: pl.Date = pa.Field(nullable=False)
    customer_id: str = pa.Field(nullable=True)
    sku: str = pa.Field(nullable=False, str_length={"min_value": 1})
    product: str = pa.Field(nullable=True)
    category: str = pa.Field(nullable=True)
    quantity: pl.Int64 = pa.Field(nullable=False, ne=0)
    unit_price: Annotated[pl.Decimal, 18, 4] = pa.Field(nullable=False, ge=0)
    total: Annotated[pl.Decimal, 18, 4] = pa.Field(nullable=False)
    ticket_size: str = pa.Field(nullable=False, isin=list(TICKET_SIZES))
    month: str = pa.Field(nullable=False, str_matches=r"^\d{4}-\d{2}$")
    weekday: str = pa.Field(nullable=False, isin=list(WEEKDAYS))
    region: str = pa.Field(nullable=False, str_length={"min_value": 1})
    batch_id: str = pa.Field(nullable=False)
    source_row: pl.Int64 = pa.Field(nullable=False, ge=1)

    class Config:
        strict = True
        ordered = True


COLUMN_TYPES: Final[dict[str, str]] = {
    "order_id": "text (derived as <file>#<row> when absent)",
    "order_ts": "ISO 8601 date or timestamp",
    "customer_id": "text",
    "sku": "text (taken from product when absent)",
    "product": "text",
    "category": "text",
    "quantity": "whole number, not 0; negative = return",
    "unit_price": "decimal >= 0, at most 4 places",
    "region": "text",
}

# Settings that are part of the contract's rules, shown by `salesflow contract`.
RULE_SETTINGS: Final = (
    "timezone",
    "timestamp_format",
    "min_order_date",
    "future_tolerance_hours",
    "max_quantity",
    "max_unit_price",
    "regions",
    "max_field_length",
    "reject_duplicates_in_warehouse",
    "max_reject_share",
)


@dataclass(frozen=True)
class ContractDescription:
    """The contract as rows of text, for the CLI and the docs."""

    version: str
    columns: list[tuple[str, str, str, str]]
    reasons: list[tuple[str, str]]
    rules: list[tuple[str, str]]


def describe_contract(settings: Any) -> ContractDescription:
    """The contract with the rules in force under `settings`."""
    columns = [
        (
            column,
            "yes" if column in REQUIRED_VALUES else "no",
            COLUMN_TYPES[column],
            ", ".join(COLUMN_ALIASES[column]),
        )
        for column in CANONICAL_COLUMNS
    ]
    reasons = [(str(reason), REASON_DESCRIPTIONS[reason]) for reason in Reason]
    rules = [(name, str(getattr(settings, name))) for name in RULE_SETTINGS]
    return ContractDescription(CONTRACT_VERSION, columns, reasons, rules)
