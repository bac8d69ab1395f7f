"""Write the corpus of bad and odd input files, and what salesflow must make of each.

    python tests/data/make_corpus.py [OUT_DIR]      (default: tests/data/corpus beside this file)

Deterministic and idempotent: every file, text or binary, and `expected.json` are rewritten with
the same bytes on every run, and tests/test_corpus.py checks that the checked-in corpus is exactly
what this script writes. To change the corpus, edit CASES here, run the script, commit both.

`expected.json` maps each file name to either
    {"error": "<BatchError subclass>", "fails": "<BatchError.problem>"}
or
    {"rows_in": N, "rejected": {"<source_row>": ["reason", ...]}, "amount": "<money loaded>"}
(rows not listed in `rejected` are loaded), optionally with "after": "<file>" naming a corpus
file loaded into the same warehouse first (for duplicate_in_warehouse).

The outcomes hold for the rules in force at NOW with the default settings plus REGIONS.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # future_date: later than 2024-06-02T12:00 UTC
REGIONS = ("North", "South", "East", "West", "Norte", "Sur", "Este", "Oeste")
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

H = "order_id,order_ts,customer_id,sku,product,category,quantity,unit_price,region"
TS = "2024-05-10T10:00:00"

EMPTY = "file is empty (0 bytes or no header): nothing to load"
NOT_PARQUET = "not a readable Parquet file (corrupt or truncated)"
UTF16 = "file is UTF-16 encoded; re-export it as UTF-8"
CORRUPT_GZIP = "compressed data is corrupt or truncated"

# Reason codes, spelled once.
RAGGED = "ragged_row"
MALFORMED = "malformed_record"
ENCODING = "bad_encoding"
TOO_LONG = "field_too_long"
NO_ID = "missing_order_id"
NO_SKU = "missing_sku"
NO_TS = "missing_order_ts"
NO_QTY = "missing_quantity"
NO_PRICE = "missing_unit_price"
NO_REGION = "missing_region"
BAD_TS = "bad_type:order_ts"
BAD_QTY = "bad_type:quantity"
BAD_PRICE = "bad_type:unit_price"
ZERO = "zero_quantity"
NEGATIVE = "negative_price"
QTY_RANGE = "quantity_out_of_range"
PRICE_RANGE = "price_out_of_range"
TOO_OLD = "before_min_date"
FUTURE = "future_date"
REGION = "unknown_region"
DUPLICATE = "duplicate"
IN_WAREHOUSE = "duplicate_in_warehouse"
ALL_MISSING = [NO_ID, NO_SKU, NO_TS, NO_QTY, NO_PRICE, NO_REGION]


@dataclass(frozen=True)
class Case:
    name: str
    content: Callable[[], bytes]
    expected: dict[str, Any]


def row(
    order_id: str,
    ts: str = TS,
    *,
    customer: str = "C1",
    sku: str = "SKU-1",
    product: str = "Widget",
    category: str = "Tools",
    qty: str = "2",
    price: str = "10.50",
    region: str = "North",
) -> str:
    """One canonical CSV record; by default 2 x 10.50 = 21.00 in North."""
    return ",".join([order_id, ts, customer, sku, product, category, qty, price, region])


def csv(*rows: str, header: str = H, eol: str = "\n") -> bytes:
    """A UTF-8 CSV file: header, rows, each line ended by `eol`."""
    return "".join(line + eol for line in (header, *rows)).encode()


def jsonl(*records: dict[str, Any], bom: bool = False) -> bytes:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return ("\ufeff" if bom else "").encode() + text.encode()


def _json_record(order_id: str, quantity: int, price: float, **extra: str) -> dict[str, Any]:
    """One valid JSON Lines record in North, quantity and price as JSON numbers."""
    return {
        "order_id": order_id,
        "order_ts": TS,
        "sku": "SKU-1",
        "quantity": quantity,
        "unit_price": price,
        "region": "North",
        **extra,
    }


def gz(data: bytes) -> bytes:
    """gzip without a timestamp, so the bytes are the same on every run."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def parquet(frame: pl.DataFrame) -> bytes:
    """Parquet with fixed options. Polars writes its version into the footer, so after a Polars
    upgrade the drift test asks for this script to be re-run."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="uncompressed", statistics=False)
    return buffer.getvalue()


def latin1(text: str) -> bytes:
    return text.encode("latin-1")


def utf16(text: str, order: str) -> bytes:
    """UTF-16 with a byte-order mark, the same on every platform."""
    if order == "le":
        return b"\xff\xfe" + text.encode("utf-16-le")
    return b"\xfe\xff" + text.encode("utf-16-be")


def fails(error: str, problem: str) -> dict[str, Any]:
    return {"error": error, "fails": problem}


def loads(
    rows_in: int, amount: str, rejected: dict[int, list[str]] | None = None, **extra: str
) -> dict[str, Any]:
    Decimal(amount)  # a typo here should fail now, not in the test
    listed = {str(source_row): reasons for source_row, reasons in sorted((rejected or {}).items())}
    return {**extra, "rows_in": rows_in, "rejected": listed, "amount": amount}


CLEAN = csv(
    row("A1"),  # 2 x 10.50 = 21.00
    row(
        "A2",
        "2024-05-11",
        customer="C2",
        sku="SKU-2",
        product="Gadget",
        qty="1",
        price="99.99",
        region="South",
    ),
    row(
        "A3",
        "2024-05-12 18:45",
        customer="C3",
        sku="SKU-3",
        product="Gizmo",
        qty="3",
        price="0.3333",
        region="East",
    ),
)
CLEAN_AMOUNT = "121.9899"  # 21.00 + 99.99 + 0.9999

TYPED = pl.DataFrame(
    {
        "order_id": ["P1", "P2", "P3", "P4"],
        "order_ts": [
            datetime(2024, 5, 10, 10, 0),
            datetime(2024, 5, 11),
            datetime(2024, 5, 12, 9, 30),
            datetime(2024, 5, 12, 9, 30),
        ],
        "customer_id": [17, None, 18, 19],
        "sku": ["SKU-1", "SKU-2", "SKU-3", "SKU-4"],
        "quantity": [2, -1, 3, 0],
        "unit_price": ["10.50", "99.99", "12,50", "1"],
        "region": ["North", "South", "East", "West"],
    },
    schema_overrides={"order_ts": pl.Datetime("us"), "customer_id": pl.Int64},
)


def _truncated_parquet() -> bytes:
    return parquet(TYPED)[:-40]


def _long_csv_gz() -> bytes:
    return gz(csv(*[row(f"A{n}") for n in range(1, 201)]))


CASES: list[Case] = [
    # --- files that fail as a batch ----------------------------------------------------------
    Case("empty.csv", lambda: b"", fails("UnreadableSourceError", EMPTY)),
    Case("empty.csv.gz", lambda: gz(b""), fails("UnreadableSourceError", EMPTY)),
    Case("empty.jsonl", lambda: b"", fails("UnreadableSourceError", EMPTY)),
    Case("empty.parquet", lambda: b"", fails("UnreadableSourceError", NOT_PARQUET)),
    Case("blank_lines_only.csv", lambda: b"\n\n\r\n", fails("UnreadableSourceError", EMPTY)),
    Case(
        "missing_column.csv",
        lambda: csv(
            "A1,2024-05-10,C1,SKU-1,Widget,Tools,2,North",
            header="order_id,order_ts,customer_id,sku,product,category,quantity,region",
        ),
        fails(
            "MissingColumnError",
            "missing required column 'unit_price' (found: order_id, order_ts, customer_id, sku, "
            "product, category, quantity, region)",
        ),
    ),
    Case(
        "missing_columns.csv",
        lambda: csv("A1,SKU-1,Widget", header="order_id,sku,product"),
        fails(
            "MissingColumnError",
            "missing required columns 'order_ts', 'quantity', 'unit_price', 'region' "
            "(found: order_id, sku, product)",
        ),
    ),
    Case(
        "missing_column.jsonl",
        lambda: jsonl(
            {"order_id": "J1", "order_ts": TS, "sku": "SKU-1", "quantity": 2, "unit_price": "1.5"}
        ),
        fails(
            "MissingColumnError",
            "missing required column 'region' (found: order_id, order_ts, sku, quantity, "
            "unit_price)",
        ),
    ),
    Case(
        "semicolon_separated.csv",
        lambda: csv(
            "A1;2024-05-10;C1;SKU-1;Widget;Tools;2;10,50;North", header=H.replace(",", ";")
        ),
        fails(
            "MissingColumnError",
            "missing required columns 'order_ts', 'quantity', 'unit_price', 'region' "
            f"(found: {H.replace(',', ';')})",
        ),
    ),
    Case(
        "utf16_le.csv",
        lambda: utf16(csv(row("A1")).decode(), "le"),
        fails("UnreadableSourceError", UTF16),
    ),
    Case(
        "utf16_be.csv",
        lambda: utf16(csv(row("A1")).decode(), "be"),
        fails("UnreadableSourceError", UTF16),
    ),
    Case(
        "utf16.csv.gz",
        lambda: gz(utf16(csv(row("A1")).decode(), "le")),
        fails("UnreadableSourceError", UTF16),
    ),
    Case(
        "truncated.csv.gz",
        lambda: _long_csv_gz()[: len(_long_csv_gz()) // 2],
        fails("UnreadableSourceError", CORRUPT_GZIP),
    ),
    Case(
        "corrupt.parquet",
        lambda: b"PAR1" + b"these bytes are not a parquet file" * 4 + b"PAR1",
        fails("UnreadableSourceError", NOT_PARQUET),
    ),
    Case("truncated.parquet", _truncated_parquet, fails("UnreadableSourceError", NOT_PARQUET)),
    # --- valid empty batches -----------------------------------------------------------------
    Case("header_only.csv", lambda: csv(), loads(0, "0")),
    Case("header_only_bom_crlf.csv", lambda: b"\xef\xbb\xbf" + csv(eol="\r\n"), loads(0, "0")),
    Case("header_only.csv.gz", lambda: gz(csv()), loads(0, "0")),
    Case("header_then_blank_lines.csv", lambda: csv() + b"\n\n\r\n", loads(0, "0")),
    Case("no_rows.parquet", lambda: parquet(TYPED.clear()), loads(0, "0")),
    # --- formats -----------------------------------------------------------------------------
    Case("clean.csv", lambda: CLEAN, loads(3, CLEAN_AMOUNT)),
    Case("clean.csv.gz", lambda: gz(CLEAN), loads(3, CLEAN_AMOUNT)),
    Case("not_really_gzip.csv.gz", lambda: CLEAN, loads(3, CLEAN_AMOUNT)),
    Case(
        "typed.parquet",  # datetime order_ts, int quantity and customer_id, string price
        lambda: parquet(TYPED),
        loads(4, "-78.99", {3: [BAD_PRICE], 4: [ZERO]}),  # 21.00 - 99.99
    ),
    Case(
        "decimal_price.parquet",  # date order_ts, int32 quantity, DECIMAL(10,2) price
        lambda: parquet(
            pl.DataFrame(
                {
                    "order_ts": [date(2024, 5, 10), date(2024, 5, 11)],
                    "sku": ["SKU-1", "SKU-2"],
                    "quantity": [2, 3],
                    "unit_price": [Decimal("12.50"), Decimal("0.99")],
                    "region": ["North", "South"],
                },
                schema_overrides={"quantity": pl.Int32, "unit_price": pl.Decimal(10, 2)},
            )
        ),
        loads(2, "27.97"),  # 25.00 + 2.97
    ),
    Case(
        "float_columns.parquet",  # float64: 2.0 is a whole quantity, 2.5 is not; 0.1 stays 0.1
        lambda: parquet(
            pl.DataFrame(
                {
                    "order_ts": [TS, TS, TS],
                    "sku": ["SKU-1", "SKU-2", "SKU-3"],
                    "quantity": [2.0, 2.5, -1.0],
                    "unit_price": [1.25, 3.0, 0.1],
                    "region": ["North", "South", "East"],
                }
            )
        ),
        loads(3, "2.40", {2: [BAD_QTY]}),  # 2.50 - 0.10
    ),
    Case(
        "float32_price.parquet",  # float32 0.1 is 0.10000000149...: rejected, never rounded
        lambda: parquet(
            pl.DataFrame(
                {
                    "order_ts": [TS, TS],
                    "sku": ["SKU-1", "SKU-2"],
                    "quantity": [2, 3],
                    "unit_price": [0.5, 0.1],
                    "region": ["North", "South"],
                },
                schema_overrides={"unit_price": pl.Float32},
            )
        ),
        loads(2, "1.00", {2: [BAD_PRICE]}),
    ),
    Case(
        "extra_nested_column.parquet",  # a column outside the contract is ignored, whatever type
        lambda: parquet(
            pl.DataFrame(
                {
                    "order_ts": [TS],
                    "sku": ["SKU-1"],
                    "quantity": [2],
                    "unit_price": ["10.50"],
                    "region": ["North"],
                    "tags": [["gift", "promo"]],
                }
            )
        ),
        loads(1, "21.00"),
    ),
    Case(
        "numbers.jsonl",  # JSON numbers for quantity and price, one price as text
        lambda: jsonl(
            {
                "order_id": "J1",
                "order_ts": TS + "Z",
                "sku": "SKU-1",
                "quantity": 2,
                "unit_price": 12.5,
                "region": "North",
            },
            {
                "order_id": "J2",
                "order_ts": "2024-05-10",
                "sku": "SKU-2",
                "quantity": -1,
                "unit_price": 0.25,
                "region": "South",
            },
            {
                "order_id": "J3",
                "order_ts": "2024-05-10",
                "sku": "SKU-3",
                "quantity": 3,
                "unit_price": "12,50",
                "region": "East",
            },
            {
                "order_id": "J4",
                "order_ts": "2024-05-10",
                "sku": "SKU-4",
                "quantity": 1,
                "unit_price": 100,
                "region": "West",
                "customer_id": 42,
            },
        ),
        loads(4, "124.75", {3: [BAD_PRICE]}),  # 25.00 - 0.25 + 100
    ),
    Case(
        "numbers_mixed.jsonl",  # one float quantity must not turn the other rows' 2 into 2.0
        lambda: jsonl(
            {"order_ts": TS, "sku": "SKU-1", "quantity": 2, "unit_price": "1.5", "region": "North"},
            {
                "order_ts": TS,
                "sku": "SKU-2",
                "quantity": 2.5,
                "unit_price": "1.5",
                "region": "North",
            },
        ),
        loads(2, "3.0", {2: [BAD_QTY]}),
    ),
    Case(
        "bom.jsonl",
        lambda: jsonl(
            {
                "order_ts": TS,
                "sku": "SKU-1",
                "quantity": "2",
                "unit_price": "10.50",
                "region": "North",
            },
            {"order_ts": TS, "sku": "SKU-2", "quantity": "1", "unit_price": "0.5", "region": "Sur"},
            bom=True,
        ),
        loads(2, "21.50"),
    ),
    Case(
        "malformed_lines.jsonl",  # lines that are no JSON object are rejected one by one
        lambda: b"".join(
            [
                jsonl(_json_record("J1", 2, 12.5)),
                b'{"order_id": "J2", "order_ts\n',  # cut off
                b"\n",  # a blank line is no record
                b"[1, 2]\n",  # a bare array
                jsonl(_json_record("J4", 1, 0.25)),
                jsonl(_json_record("J5", 1, 1, product="Cami\u00f3n")).replace(
                    "\u00f3".encode(), latin1("\u00f3")
                ),
                b'"J6"\n',  # a bare string
                jsonl(_json_record("J7", 3, 1)),
            ]
        ),
        loads(
            7, "28.25", {2: [MALFORMED], 3: [MALFORMED], 5: [MALFORMED, ENCODING], 6: [MALFORMED]}
        ),
    ),
    Case(
        "no_object_lines.jsonl",  # not one line is a JSON object: the file fails
        lambda: b'{"order_id": "J1", "order_ts\n[1, 2]\n',
        fails("UnreadableSourceError", "cannot be read: Syntax at character 0"),
    ),
    # --- CSV dialect -------------------------------------------------------------------------
    Case(
        "bom.csv",
        lambda: b"\xef\xbb\xbf" + csv(row("A1"), row("A2", qty="0")),
        loads(2, "21.00", {2: [ZERO]}),
    ),
    Case(
        "crlf.csv",
        lambda: csv(
            row("A1"),
            row("A2", product='"two\r\nlines"'),
            "",
            row("A3", qty="0"),
            row("A4", price="1"),
            eol="\r\n",
        ),
        loads(4, "44.00", {3: [ZERO]}),  # 21.00 + 21.00 + 2.00
    ),
    Case(
        "mixed_line_endings.csv",  # LF and CRLF, no newline at the end
        lambda: (
            (H + "\r\n" + row("A1") + "\n" + row("A2", qty="1") + "\r\n").encode()
            + row("A3", qty="3").encode()
        ),
        loads(3, "63.00"),  # 21.00 + 10.50 + 31.50
    ),
    Case(
        "quoted_separators.csv",
        lambda: csv(
            '"A1","2024-05-10T10:00:00","C1","SKU-1","Widget, large","Tools ""pro""","2",'
            '"10.50","North"',
            row("A2", product='"Desk, oak, 2m"', qty="1", price='"10.50"'),
            row("A3", price='"1,234.50"'),
            row("A4", product='""'),
            header=",".join(f'"{name}"' for name in H.split(",")),
        ),
        loads(4, "52.50", {3: [BAD_PRICE]}),  # 21.00 + 10.50 + 21.00
    ),
    Case(
        "quoted_newlines.csv",
        lambda: csv(
            row("A1", product='"two\nlines"'),
            row("A2", category='"a\n\nb"'),
            row("A3", qty="0"),
            row("A4", product='"multi\r\nline"'),
        ),
        loads(4, "63.00", {3: [ZERO]}),
    ),
    Case(
        "blank_lines.csv",
        lambda: csv("", row("A1"), "", "", row("A2", qty="0"), row("A3"), "", ""),
        loads(3, "42.00", {2: [ZERO]}),
    ),
    Case(
        "blank_lines_before_header.csv",
        lambda: b"\n\n" + csv(row("A1")),
        loads(1, "21.00"),
    ),
    Case(
        "whitespace_lines.csv",  # a line of spaces is a (one-field) record, unlike a blank line
        lambda: csv(row("A1"), "   ", "A9,,,,,,,,", row("A2", qty="1")),
        loads(
            4,
            "31.50",
            {2: [RAGGED, *ALL_MISSING], 3: [NO_SKU, NO_TS, NO_QTY, NO_PRICE, NO_REGION]},
        ),
    ),
    Case(
        "ragged_short.csv",
        lambda: csv(
            row("A1"),
            row("A2").rsplit(",", 1)[0],
            row("A3").rsplit(",", 2)[0],
            "A4",
            row("A5", qty="1"),
        ),
        loads(
            5,
            "31.50",
            {
                2: [RAGGED, NO_REGION],
                3: [RAGGED, NO_PRICE, NO_REGION],
                4: [RAGGED, NO_SKU, NO_TS, NO_QTY, NO_PRICE, NO_REGION],
            },
        ),
    ),
    Case(
        "ragged_long.csv",
        lambda: csv(
            row("A1") + ",extra",
            row("A2") + ",",
            row("A3") + ',"x, y",z',
            row("A4"),
            row("A5", qty="0") + ",extra",
        ),
        loads(5, "21.00", {1: [RAGGED], 2: [RAGGED], 3: [RAGGED], 5: [RAGGED, ZERO]}),
    ),
    Case(
        "unit_separator_in_field.csv",  # \x1f is a valid character, not a field separator
        lambda: csv(
            row("A1", product="Widget\x1fPro"),
            row("A2", product="Gadget\x1f", category='"Tools\nand more"'),
            row("A3"),
        ),
        loads(3, "63.00"),
    ),
    # --- encodings ---------------------------------------------------------------------------
    Case(
        "latin1_bytes.csv",  # UTF-8 with a few latin-1 records
        lambda: (
            csv(row("A1", product="Cami\u00f3n"))
            + latin1(row("A2", product="Cami\u00f3n") + "\n")
            + latin1(row("A3", region="Pe\u00f1\u00f3n") + "\n")
            + (row("A4", price="1") + "\n").encode()
        ),
        loads(4, "23.00", {2: [ENCODING], 3: [ENCODING, REGION]}),
    ),
    Case(
        "nul_bytes.csv",
        lambda: csv(
            row("A1", product="Pen\x00"),
            row("A2", qty="2\x00"),
            row("A3"),
            row("A4", customer="\x00"),
        ),
        loads(4, "21.00", {1: [ENCODING], 2: [ENCODING, BAD_QTY], 4: [ENCODING]}),
    ),
    Case(
        "long_fields.csv",
        lambda: csv(
            row("A1", product="x" * 1000),
            row("A2", product="x" * 1001),
            row("A3", customer="c" * 5000),
            row("A4", category='"' + "a," * 1000 + '"'),
            row("A5", product="\u00e9" * 1000),  # 1000 characters, 2000 bytes
        ),
        loads(5, "42.00", {2: [TOO_LONG], 3: [TOO_LONG], 4: [TOO_LONG]}),
    ),
    # --- values ------------------------------------------------------------------------------
    Case(
        "whitespace_values.csv",
        lambda: csv(
            row("A1", customer="   ", product="\t", category=" "),
            row("A2", region="   "),
            row("A3", sku="  ", product="  "),
            row(" A4 ", qty=" 3 ", price="\t10.50 ", region=" South "),
            row("A5", "   ", qty=" ", price="  "),
        ),
        loads(5, "52.50", {2: [NO_REGION], 3: [NO_SKU], 5: [NO_TS, NO_QTY, NO_PRICE]}),
    ),
    Case(
        "duplicates.csv",
        lambda: csv(
            row("A1"),
            row("A2", qty="1"),
            row("A1"),
            row(" A1 ", qty=" 2", region="North "),
            row("A5", customer=""),
            row("A5", customer="   "),
            row("A1", qty="3"),
            ",".join(f'"{value}"' for value in row("A2", qty="1").split(",")),
        ),
        loads(8, "84.00", {3: [DUPLICATE], 4: [DUPLICATE], 6: [DUPLICATE], 8: [DUPLICATE]}),
    ),
    Case(
        "duplicate_in_warehouse.csv",
        lambda: csv(
            row("A1"),
            row(
                " A2 ",
                "2024-05-11",
                customer="C2",
                sku="SKU-2",
                product="Gadget",
                qty="1",
                price="99.99",
                region="South",
            ),
            row(
                "A3",
                "2024-05-12 18:45",
                customer="C3",
                sku="SKU-3",
                product="Gizmo",
                qty="4",
                price="0.3333",
                region="East",
            ),
            row("A4", qty="1", price="5"),
            row("A1"),
        ),
        loads(
            5,
            "6.3332",  # 1.3332 + 5.00
            {1: [IN_WAREHOUSE], 2: [IN_WAREHOUSE], 5: [DUPLICATE]},
            after="clean.csv",
        ),
    ),
    Case(
        "spanish_headers.csv",  # the course's CSV: no order_id, producto fills sku
        lambda: csv(
            "2024-01-15,Laptop,2,1200.50,Norte",
            "2024-01-15,Mouse,10,25.99,Sur",
            "2024-01-16,Teclado,-1,75.00,Este",
            "2024-01-15,Laptop,2,1200.50,Norte",
            "2024-01-17,,1,10,Oeste",
            header="fecha,producto,cantidad,precio_unitario,region",
        ),
        loads(5, "2585.90", {4: [DUPLICATE], 5: [NO_SKU]}),  # 2401.00 + 259.90 - 75.00
    ),
    Case(
        "spanish_accented_headers.csv",
        lambda: csv(
            "2024-02-01,P-1,Silla,4,45.5,Sur,C-9",
            "2024-02-01,P-2,Mesa,1,150,Norte,",
            header="Fecha,Pedido,Producto,Cantidad,Precio,Regi\u00f3n,Cliente",
        ),
        loads(2, "332.00"),
    ),
    Case(
        "upper_padded_headers.csv",
        lambda: csv(
            row("A1"),
            row("A2", qty="0"),
            header=" ORDER_ID , Order_TS ,CUSTOMER_ID,  SKU,Product ,CATEGORY,QTY,Price,  REGION  ",
        ),
        loads(2, "21.00", {2: [ZERO]}),
    ),
    Case(
        "extra_columns.csv",
        lambda: csv(
            row("A1") + ",gift wrap,10%,x,South",
            row("A2", qty="1") + ",,,,",
            header=H + ",notes,discount,,region_old",
        ),
        loads(2, "31.50"),
    ),
    Case(
        "bad_prices.csv",
        lambda: csv(
            *[
                row(f"A{n}", qty="1", price=price)
                for n, price in enumerate(
                    [
                        '"12,50"',
                        "1e3",
                        "1.23456",
                        "\u20ac5",
                        ".5",
                        "5.",
                        "1 000",
                        "12.3456",
                        "+7.25",
                        "007.50",
                        "0",
                        "NaN",
                        "0x10",
                    ],
                    start=1,
                )
            ]
        ),
        loads(
            13,
            "27.0956",  # 12.3456 + 7.25 + 7.50 + 0
            {n: [BAD_PRICE] for n in (1, 2, 3, 4, 5, 6, 7, 12, 13)},
        ),
    ),
    Case(
        "bad_quantities.csv",  # "3.0" is a whole number (a float column's 3); "2.5" is not
        lambda: csv(
            *[
                row(f"A{n}", qty=qty, price="10")
                for n, qty in enumerate(
                    ["2.5", "3.0", "two", '"1,000"', "1e3", "+3", "007", "-0", "2 ", "\u0662"],
                    start=1,
                )
            ]
        ),
        loads(
            10,
            "150",  # 3.0 x 10 + 3 x 10 + 7 x 10 + 2 x 10
            {
                1: [BAD_QTY],
                3: [BAD_QTY],
                4: [BAD_QTY],
                5: [BAD_QTY],
                8: [ZERO],
                10: [BAD_QTY],
            },
        ),
    ),
    Case(
        "non_iso_dates.csv",
        lambda: csv(
            *[
                row(f"A{n}", ts)
                for n, ts in enumerate(
                    [
                        "05/10/2024",
                        "2024/05/10",
                        "May 10 2024",
                        "20240510",
                        "10-05-2024",
                        "2024-5-10",
                        TS,
                        "10.05.2024 10:00",
                        "2024-05-10T10:00:00 +02:00",
                    ],
                    start=1,
                )
            ]
        ),
        loads(9, "21.00", {n: [BAD_TS] for n in (1, 2, 3, 4, 5, 6, 8, 9)}),
    ),
    Case(
        "invalid_calendar_dates.csv",
        lambda: csv(
            *[
                row(f"A{n}", ts)
                for n, ts in enumerate(
                    [
                        "2024-02-30",
                        "2023-02-29",
                        "2024-04-31",
                        "2024-13-01",
                        "2024-00-10",
                        "2024-01-05T24:00",
                        "2024-01-05T10:60",
                        "2024-02-29",
                        "2024-01-05T23:59:59.999999",
                    ],
                    start=1,
                )
            ]
        ),
        loads(9, "42.00", {n: [BAD_TS] for n in range(1, 8)}),
    ),
    Case(
        "timestamps_with_offsets.csv",  # converted to the shop's zone (UTC) before the checks
        lambda: csv(
            *[
                row(f"A{n}", ts, qty="1", price="10")
                for n, ts in enumerate(
                    [
                        "2024-05-10T10:00:00Z",
                        "2024-05-10T10:00:00+02:00",
                        "2024-05-10 23:30:00-05:00",
                        "2024-05-10T10:00:00.123456Z",
                        "2024-05-10T10:00+0200",
                        "2024-05-10T10:00:00+02",
                        "2024-06-02T13:30:00+02:00",
                        "2024-06-02T12:30:00-01:00",
                    ],
                    start=1,
                )
            ]
        ),
        loads(8, "70", {8: [FUTURE]}),  # row 7 is 11:30 UTC, row 8 13:30 UTC
    ),
    Case(
        "future_dates.csv",  # not after NOW + 24 h = 2024-06-02T12:00
        lambda: csv(
            *[
                row(f"A{n}", ts, qty="1", price="10")
                for n, ts in enumerate(
                    [
                        "2024-06-02T12:00:00",
                        "2024-06-02T12:00:01",
                        "2024-06-02",
                        "2024-06-03",
                        "2099-12-31T23:59:59",
                        "2024-06-01T12:00:00Z",
                    ],
                    start=1,
                )
            ]
        ),
        loads(6, "30", {2: [FUTURE], 4: [FUTURE], 5: [FUTURE]}),
    ),
    Case(
        "before_min_date.csv",  # not before 2000-01-01
        lambda: csv(
            *[
                row(f"A{n}", ts, qty="1", price="10")
                for n, ts in enumerate(
                    [
                        "1999-12-31",
                        "2000-01-01",
                        "1999-12-31T23:30:00-01:00",
                        "1970-01-01T00:00:00Z",
                        "1900-01-01",
                        "2000-01-01T00:30:00+01:00",
                    ],
                    start=1,
                )
            ]
        ),
        loads(6, "20", {1: [TOO_OLD], 4: [TOO_OLD], 5: [TOO_OLD], 6: [TOO_OLD]}),
    ),
    Case(
        "out_of_range.csv",  # |quantity| <= 100000, unit_price <= 1000000
        lambda: csv(
            row("A1", qty="100000", price="10"),
            row("A2", qty="100001", price="10"),
            row("A3", qty="-100001", price="10"),
            row("A4", qty="999999999999999999", price="10"),
            row("A5", qty="99999999999999999999", price="10"),
            row("A6", qty="1", price="1000000"),
            row("A7", qty="1", price="1000000.0001"),
            row("A8", qty="1", price="99999999999999.9999"),
            row("A9", qty="200000", price="2000000"),
            row("A10", qty="1", price="123456789012345678"),
        ),
        loads(
            10,
            "2000000",
            {
                2: [QTY_RANGE],
                3: [QTY_RANGE],
                4: [QTY_RANGE],
                5: [QTY_RANGE],
                7: [PRICE_RANGE],
                8: [PRICE_RANGE],
                9: [QTY_RANGE, PRICE_RANGE],
                10: [PRICE_RANGE],
            },
        ),
    ),
    Case(
        "negative_price_zero_quantity.csv",
        lambda: csv(
            row("A1", price="-1"),
            row("A2", price="-0.0001"),
            row("A3", qty="0"),
            row("A4", qty="000"),
            row("A5", qty="0", price="-5"),
            row("A6", price="-0.00"),
            row("A7"),
        ),
        loads(
            7,
            "21.00",
            {1: [NEGATIVE], 2: [NEGATIVE], 3: [ZERO], 4: [ZERO], 5: [ZERO, NEGATIVE]},
        ),
    ),
    Case(
        "returns.csv",  # a negative quantity is a return: loaded, with a negative total
        lambda: csv(
            row("A1", qty="-1", price="99.99"),
            row("A2", qty="-3"),
            row("A3"),
            row("A4", qty="-100000", price="0.01"),
            row("A5", qty="-2", price="-5"),
        ),
        loads(5, "-1110.49", {5: [NEGATIVE]}),  # -99.99 - 31.50 + 21.00 - 1000.00
    ),
    Case(
        "unknown_region.csv",
        lambda: csv(
            row("A1", region="North"),
            row("A2", region=" South "),
            row("A3", region="Atlantis"),
            row("A4", region="Norte"),
            row("A5", region=""),
            row("A6", qty="0", region="Mars"),
        ),
        loads(6, "63.00", {3: [REGION], 5: [NO_REGION], 6: [ZERO, REGION]}),
    ),
    Case(
        "missing_values.csv",
        lambda: csv(
            row(""),
            row("A2", sku=""),
            row("A3", ""),
            row("A4", qty=""),
            row("A5", price=""),
            row("A6", region=""),
            ",,,,,,,,",
            row("A8"),
        ),
        loads(
            8,
            "21.00",
            {
                1: [NO_ID],
                2: [NO_SKU],
                3: [NO_TS],
                4: [NO_QTY],
                5: [NO_PRICE],
                6: [NO_REGION],
                7: ALL_MISSING,
            },
        ),
    ),
    Case(
        "several_reasons.csv",
        lambda: csv(
            row("", "1999-12-31", product="x" * 1001, qty="0", price="-1", region="Atlantis"),
            row("", "1999-12-31", product="x" * 1001, qty="0", price="-1", region="Atlantis"),
            "A3,31/12/2023,C1,SKU-1,Widget,Tools,2.5,12,50,North",  # unquoted "12,50"
            row("A4", "2030-01-01", sku="SKU\x00", qty="100001", price="2000000"),
            row("A5"),
        ),
        loads(
            5,
            "21.00",
            {
                1: [TOO_LONG, NO_ID, ZERO, NEGATIVE, TOO_OLD, REGION],
                2: [TOO_LONG, NO_ID, ZERO, NEGATIVE, TOO_OLD, REGION, DUPLICATE],
                3: [RAGGED, BAD_TS, BAD_QTY, REGION],
                4: [ENCODING, QTY_RANGE, PRICE_RANGE, FUTURE],
            },
        ),
    ),
]


def write_corpus(target: Path) -> list[Path]:
    """Write every corpus file and expected.json into `target`; return the paths written."""
    target.mkdir(parents=True, exist_ok=True)
    names = [case.name for case in CASES]
    if len(set(names)) != len(names):
        raise SystemExit("make_corpus: two cases share a file name")
    written = []
    for case in CASES:
        path = target / case.name
        path.write_bytes(case.content())
        written.append(path)
    expected = {case.name: case.expected for case in sorted(CASES, key=lambda c: c.name)}
    manifest = target / "expected.json"
    manifest.write_text(json.dumps(expected, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")
    # Git must keep every byte: no end-of-line conversion of the CRLF, BOM or binary files.
    attributes = target / ".gitattributes"
    attributes.write_text("* -text\n", encoding="utf-8")
    return [*written, manifest, attributes]


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else CORPUS
    written = write_corpus(target)
    print(f"wrote {len(written) - 2} corpus files, expected.json and .gitattributes to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
