"""The contract's checks as SQL: one statement that classifies every row of a text-typed batch.

Values are trimmed as Polars trims (all Unicode White_Space; the regex runs only on values that
start or end with white space), the shapes are value_parsing's RE2 patterns, and each reason code
is one boolean flag, so the list of reasons is built only for rejected rows (`validate`). The
batch is a relation in positional form (`RawLayout`): a header is data, never SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from salesflow.contract import CANONICAL_COLUMNS, Reason
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.value_parsing import (
    COMMON_TIMESTAMP_PATTERN,
    PRICE_PATTERN,
    PRICE_TOO_LONG,
    QUANTITY_PATTERN,
    QUANTITY_TOO_LONG,
)

# Rust's `char::is_whitespace` (Unicode White_Space): what Polars' strip_chars() removes.
WHITE_SPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPACE: Final = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITE_SPACE) + "]"

PATTERNS: Final = {
    "quantity_pattern": QUANTITY_PATTERN,
    "price_pattern": PRICE_PATTERN,
    "quantity_long": QUANTITY_TOO_LONG,
    "price_long": PRICE_TOO_LONG,
    "common_ts": COMMON_TIMESTAMP_PATTERN,
    "white_space": WHITE_SPACE,
    "trim": f"^{_SPACE}+|{_SPACE}+$",
}

# The function (value_parsing.parse_order_ts, registered on the connection by `validate`) that
# parses the timestamps the SQL leaves to chrono; each batch's name starts with this.
OTHER_TIMESTAMPS: Final = "salesflow_other_timestamps"


@dataclass(frozen=True)
class RawLayout:
    """A batch relation in positional form: `v0..vN` (text) are the file's fields under
    `header`, then `source_row` (1-based record number), `field_count` (CSV: fields the record
    had) and `record_text` (JSON Lines: a line that is no object); the last two may be NULL."""

    relation: str
    header: tuple[str, ...]

    def fields(self) -> list[str]:
        """The positional names of the file's fields, in header order."""
        return [field(index) for index in range(len(self.header))]


def field(index: int) -> str:
    """The positional name of the file's `index`-th field in a batch relation."""
    return f"v{index}"


def parameters(statement: str, batch_id: str) -> dict[str, object]:
    """The named parameters `statement` uses (DuckDB refuses unused ones)."""
    values = PATTERNS | {"batch_prefix": f"{batch_id}#", "batch_id": batch_id}
    return {name: value for name, value in values.items() if f"${name}" in statement}


def _normalised(value: str) -> str:
    """Trimmed of Unicode White_Space, blank as NULL; the regex runs only on the rare values
    that start or end with white space."""
    return (
        f"CASE WHEN contains($white_space, {value}[1]) OR contains($white_space, {value}[-1]) "
        f"THEN NULLIF(regexp_replace({value}, $trim, '', 'g'), '') "
        f"ELSE NULLIF({value}, '') END"
    )


def checked_table_sql(
    raw: RawLayout,
    column_map: Mapping[str, str],
    rules: ValidationRules,
    malformed: bool,
    checks: Sequence[tuple[str, Reason]],
    timestamps: str = OTHER_TIMESTAMPS,
) -> str:
    """CREATE the temp table `checked`: per row the canonical text (`c_*`), typed values, and
    one flag `f<i>` per check; only what the sales rows and the reasons need is kept.
    `timestamps` names the registered function that parses the other timestamp shapes."""
    fields = raw.fields()
    position = {name: index for index, name in enumerate(raw.header)}
    trimmed = [f"{_normalised(field)} AS n_{field}" for field in fields]
    canonical = []
    for column in CANONICAL_COLUMNS:
        if column in column_map:
            canonical.append(f"n_{field(position[column_map[column]])} AS c_{column}")
        elif column == "order_id":
            canonical.append("$batch_prefix || CAST(source_row AS VARCHAR) AS c_order_id")
        else:
            canonical.append(f"CAST(NULL AS VARCHAR) AS c_{column}")
    texts = [*fields, "record_text"] if malformed else fields
    bad_bytes = " OR ".join(f"contains({t}, '\ufffd') OR contains({t}, chr(0))" for t in texts)
    limit = int(rules.max_field_length)
    too_long = " OR ".join(f"length({field}) > {limit}" for field in fields)
    copy_key = ", ".join(
        [f"n_{field}" for field in fields] + (["record_text"] if malformed else [])
    )
    flags = ", ".join(
        f"COALESCE({sql}, false) AS f{index}" for index, (sql, _) in enumerate(checks)
    )
    return f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        WITH trimmed AS (
            SELECT source_row, field_count, record_text,
                   COALESCE({bad_bytes or "false"}, false) AS bad_encoding,
                   COALESCE({too_long or "false"}, false) AS too_long
                   {"".join(", " + t for t in trimmed)}
            FROM {raw.relation}
        ), {_duplicates_sql(copy_key)}, canonical AS (
            SELECT trimmed.*, {", ".join(canonical)},
                   COALESCE(d.is_duplicate, false) AS is_duplicate
            FROM trimmed LEFT JOIN duplicates d USING (source_row)
        ), shaped AS (
            SELECT *,
                regexp_matches(c_quantity, $quantity_pattern) AS quantity_ok,
                regexp_matches(c_unit_price, $price_pattern) AS price_ok,
                regexp_matches(c_quantity, $quantity_long) AS quantity_long,
                regexp_matches(c_unit_price, $price_long) AS price_long,
                CASE WHEN regexp_matches(c_order_ts, $common_ts)
                     THEN TRY_CAST(c_order_ts AS TIMESTAMP) END AS common_ts
            FROM canonical
        ), typed AS (
            SELECT *,
                COALESCE(quantity_ok AND quantity_long, false) AS quantity_huge,
                COALESCE(price_ok AND price_long, false) AS price_huge,
                CASE WHEN quantity_ok AND NOT quantity_long
                     THEN TRY_CAST(regexp_replace(c_quantity, '\\.0+$', '') AS BIGINT) END
                    AS quantity,
                CASE WHEN price_ok AND NOT price_long
                     THEN TRY_CAST(c_unit_price AS DECIMAL(18, 4)) END AS unit_price,
                CASE WHEN common_ts IS NULL AND c_order_ts IS NOT NULL
                     THEN {timestamps}(c_order_ts) ELSE common_ts END AS order_ts
            FROM shaped
        )
        SELECT source_row, c_order_id, c_customer_id, c_sku, c_product, c_category, c_region,
               order_ts, quantity, unit_price, {flags}
        FROM typed
    """


def _duplicates_sql(copy_key: str) -> str:
    """CTE `duplicates` (source_row, is_duplicate) over `trimmed`: a row is a duplicate when an
    earlier row has the same normalised fields. The exact comparison (a window over every field)
    runs only on the rows whose hash of the fields occurs more than once, the few candidates;
    over all rows it was the statement's costliest step."""
    if not copy_key:
        return "duplicates AS (SELECT source_row, false AS is_duplicate FROM trimmed WHERE false)"
    return f"""repeated_hashes AS (
            SELECT hash({copy_key}) AS copy_hash FROM trimmed GROUP BY copy_hash
            HAVING count(*) > 1
        ), duplicates AS (
            SELECT source_row,
                   source_row > min(source_row) OVER (PARTITION BY {copy_key}) AS is_duplicate
            FROM trimmed
            WHERE hash({copy_key}) IN (SELECT copy_hash FROM repeated_hashes)
        )"""


def checks(rules: ValidationRules, header_fields: int, malformed: bool) -> list[tuple[str, Reason]]:
    """Every check as a SQL condition over `typed`, in contract order (as validate._reasons).

    A malformed line has no fields to check: it carries `malformed_record` (and
    `bad_encoding` when its text holds such bytes), never reasons about values it lacks.
    """
    checks: list[tuple[str, Reason]] = [
        (f"field_count <> {int(header_fields)}", Reason.RAGGED_ROW),
        ("bad_encoding", Reason.BAD_ENCODING),
        ("too_long", Reason.FIELD_TOO_LONG),
        ("c_order_id IS NULL", Reason.MISSING_ORDER_ID),
        ("c_sku IS NULL", Reason.MISSING_SKU),
        ("c_order_ts IS NULL", Reason.MISSING_ORDER_TS),
        ("c_quantity IS NULL", Reason.MISSING_QUANTITY),
        ("c_unit_price IS NULL", Reason.MISSING_UNIT_PRICE),
        ("c_region IS NULL", Reason.MISSING_REGION),
        ("c_order_ts IS NOT NULL AND order_ts IS NULL", Reason.BAD_TYPE_ORDER_TS),
        (
            "c_quantity IS NOT NULL AND quantity IS NULL AND NOT quantity_huge",
            Reason.BAD_TYPE_QUANTITY,
        ),
        (
            "c_unit_price IS NOT NULL AND unit_price IS NULL AND NOT price_huge",
            Reason.BAD_TYPE_UNIT_PRICE,
        ),
        ("quantity = 0", Reason.ZERO_QUANTITY),
        ("unit_price < 0", Reason.NEGATIVE_PRICE),
        (
            f"abs(quantity) > {int(rules.max_quantity)} OR quantity_huge",
            Reason.QUANTITY_OUT_OF_RANGE,
        ),
        (
            f"unit_price > {_money(rules.max_unit_price)} OR price_huge",
            Reason.PRICE_OUT_OF_RANGE,
        ),
        (
            f"CAST(order_ts AS DATE) < DATE '{rules.min_order_date.isoformat()}'",
            Reason.BEFORE_MIN_DATE,
        ),
        (
            f"order_ts > TIMESTAMP '{rules.not_after.isoformat(sep=' ')}'"
            if rules.not_after is not None
            else "false",
            Reason.FUTURE_DATE,
        ),
        (_unknown_region(rules), Reason.UNKNOWN_REGION),
        ("is_duplicate", Reason.DUPLICATE),
    ]
    if malformed:
        checks = [
            (sql if code == Reason.BAD_ENCODING else f"({sql}) AND record_text IS NULL", code)
            for sql, code in checks
        ]
        checks.insert(1, ("record_text IS NOT NULL", Reason.MALFORMED_RECORD))
    return checks


def sales_sql(rejected_when: str, bands: TicketBands) -> str:
    """The `sales` rows of the valid rows of `checked`, in source order: the transform (total,
    ticket size, calendar columns, batch id) in SQL. Parameter: $batch_id."""
    low, medium, high = (
        _money(bound) for bound in (bands.low_max, bands.medium_max, bands.high_max)
    )
    return f"""
        SELECT order_id, order_ts, order_date, customer_id, sku, product, category, quantity,
               unit_price, total,
               CASE WHEN total < 0 THEN 'return' WHEN total <= {low} THEN 'low'
                    WHEN total <= {medium} THEN 'medium' WHEN total <= {high} THEN 'high'
                    ELSE 'very_high' END AS ticket_size,
               strftime(order_ts, '%Y-%m') AS month, strftime(order_ts, '%A') AS weekday,
               region, $batch_id AS batch_id, source_row
        FROM (
            SELECT c_order_id AS order_id, order_ts, CAST(order_ts AS DATE) AS order_date,
                   c_customer_id AS customer_id, c_sku AS sku, c_product AS product,
                   c_category AS category, quantity, unit_price,
                   CAST(quantity * unit_price AS DECIMAL(18, 4)) AS total, c_region AS region,
                   source_row
            FROM checked WHERE NOT ({rejected_when})
        ) AS valid
        ORDER BY source_row
    """


def _money(value: Decimal) -> str:
    """A configured amount as an exact SQL literal (settings are values, written as such)."""
    return f"CAST('{Decimal(value):f}' AS DECIMAL(38, 4))"


def _unknown_region(rules: ValidationRules) -> str:
    """Regions are settings, but still values: each is a quoted SQL string literal."""
    if rules.regions is None:
        return "false"
    known = ", ".join("'" + region.replace("'", "''") + "'" for region in sorted(rules.regions))
    return f"c_region IS NOT NULL AND NOT list_contains([{known}]::VARCHAR[], c_region)"
