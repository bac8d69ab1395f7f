"""File names are data, not patterns: `sales[1].csv` is read as itself, never as a glob."""

from __future__ import annotations

import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from salesflow import stages
from salesflow.manifest import BatchStatus
from salesflow.rules import ValidationRules
from salesflow.sources.files import map_columns, stage_source
from salesflow.transform import TicketBands
from salesflow.validate import validate_batch
from salesflow.warehouse import DuckDBWarehouse
from salesflow.warehouse.base import LoadPolicy

HEADER = "order_id,order_ts,sku,quantity,unit_price,region"


def content(fmt: str, order_ids: list[str]) -> bytes:
    """A valid file of `fmt` with one 2 x 1.50 North row per order id."""
    rows = [
        {
            "order_id": order_id,
            "order_ts": "2024-05-10",
            "sku": "SKU-1",
            "quantity": "2",
            "unit_price": "1.50",
            "region": "North",
        }
        for order_id in order_ids
    ]
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        pl.DataFrame(rows).write_parquet(buffer)
        return buffer.getvalue()
    text = HEADER + "\n" + "".join(",".join(row.values()) + "\n" for row in rows)
    return gzip.compress(text.encode(), mtime=0) if fmt == "csv.gz" else text.encode()


# (the glob-like name, files its expansion would match instead)
NAMES = [
    ("sales[1].csv", "csv", ["sales1.csv"]),
    ("sales*.csv", "csv", ["sales_a.csv", "sales_b.csv"]),
    ("what?.csv", "csv", ["whatx.csv"]),
    ("sales[1].csv.gz", "csv.gz", ["sales1.csv.gz"]),
    ("day*.csv.gz", "csv.gz", ["day_2.csv.gz"]),
    ("what?.parquet", "parquet", ["whatx.parquet"]),
    ("p[0-9].parquet", "parquet", ["p1.parquet", "p2.parquet"]),
    ("x[a-z].jsonl", "jsonl", ["xa.jsonl"]),
    ("all*?.jsonl", "jsonl", ["all_1.jsonl"]),
]


@pytest.mark.parametrize("beside", [False, True], ids=["alone", "beside-matches"])
@pytest.mark.parametrize(("name", "fmt", "matches"), NAMES, ids=[name for name, _, _ in NAMES])
def test_a_glob_like_file_name_reads_exactly_that_file(
    tmp_path: Path, name: str, fmt: str, matches: list[str], beside: bool
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    source = landing / name
    source.write_bytes(content(fmt, ["T1", "T2"]))
    if beside:  # expanding the name would read these, and more rows
        for number, match in enumerate(matches):
            (landing / match).write_bytes(
                content(fmt, [f"D{number}a", f"D{number}b", f"D{number}c"])
            )
    # Staged as the stages do it: under a folder named after the batch.
    staged = tmp_path / "staging" / name / "raw.parquet"

    rows, header = stage_source(source, staged)

    raw = pl.read_parquet(staged, glob=False)
    result = validate_batch(raw, map_columns(name, header), name)
    assert rows == 2
    assert header == HEADER.split(",")
    assert result.rejected.height == 0
    assert result.valid.select("order_id", "source_row").rows() == [("T1", 1), ("T2", 2)]


@pytest.mark.parametrize(("name", "fmt", "matches"), NAMES, ids=[name for name, _, _ in NAMES])
def test_a_glob_like_file_name_loads_its_own_rows_beside_the_files_it_would_match(
    tmp_path: Path, name: str, fmt: str, matches: list[str]
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / name).write_bytes(content(fmt, ["T1", "T2"]))
    for number, match in enumerate(matches):
        (landing / match).write_bytes(content(fmt, [f"D{number}a", f"D{number}b", f"D{number}c"]))
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    staging = tmp_path / "staging"
    # The matches staged first, so a glob of the name's staging folder would find theirs.
    for source in [*(landing / match for match in matches), landing / name]:
        manifest = stages.extract(source, staging)
        manifest = stages.validate(manifest, ValidationRules(), TicketBands())
        outcome = warehouse.load_batch(manifest, None, LoadPolicy())
        assert outcome.status == BatchStatus.LOADED, outcome.error

    loaded = warehouse.fetch(
        "SELECT order_id, source_row, total FROM sales WHERE order_id LIKE 'T%' ORDER BY 2"
    )
    assert loaded == [("T1", 1, Decimal("3.0000")), ("T2", 2, Decimal("3.0000"))]
    assert warehouse.fetch("SELECT count(*) FROM sales") == [(2 + 3 * len(matches),)]
