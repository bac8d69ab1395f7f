"""Typed Parquet and JSON Lines values become text without a float deciding what money is."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salesflow.errors import AmbiguousColumnError
from salesflow.sources.files import discover_sources, map_columns
from salesflow.sources.typed_files import read_jsonl_as_text, scan_parquet_as_text
from salesflow.validate import validate_batch


def test_parquet_values_become_the_text_a_person_wrote(tmp_path: Path) -> None:
    table = pa.table(
        {
            "price64": pa.array([19.99, 0.1 + 0.2], pa.float64()),
            "price32": pa.array([12345.6785, 2.5], pa.float32()),
            "exact": pa.array([Decimal("12.5"), Decimal("3")], pa.decimal128(38, 10)),
            "quantity": pa.array([2.0, None], pa.float64()),
            "tags": pa.array([[1, 2], None], pa.list_(pa.int64())),
            "flag": pa.array([True, False]),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")

    text = scan_parquet_as_text(tmp_path / "typed.parquet").collect()

    assert text.rows() == [
        ("19.99", "12345.6787109375", "12.5", "2.0", "[1,2]", "true"),
        ("0.30000000000000004", "2.5", "3", None, None, "false"),
    ]


def test_json_numbers_keep_the_digits_written_in_the_file(tmp_path: Path) -> None:
    source = tmp_path / "sales.jsonl"
    source.write_text(
        '{"unit_price": 19.999999999999999999, "quantity": 10, "note": "price: 5, ok"}\n'
        "\n"
        '{"quantity":2.5,"unit_price":1e2,"note":null}\n',
        encoding="utf-8",
    )

    text = read_jsonl_as_text(source)

    assert text.select("unit_price", "quantity", "note").rows() == [
        ("19.999999999999999999", "10", "price: 5, ok"),
        ("1e2", "2.5", None),
    ]


def test_money_that_only_a_float_could_hold_is_rejected_not_rounded(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "order_id": ["A", "B", "C"],
                "order_ts": ["2024-01-05", "2024-01-05", "2024-01-05"],
                "sku": ["S", "S", "S"],
                "quantity": pa.array([1.0, 2.0, 3.0], pa.float64()),
                "unit_price": pa.array([12345.6785, 19.5, 4.25], pa.float32()),
                "region": ["N", "N", "N"],
            }
        ),
        tmp_path / "f.parquet",
    )
    raw = scan_parquet_as_text(tmp_path / "f.parquet").with_row_index("__source_row", offset=1)
    raw = raw.with_columns(pl.col("__source_row").cast(pl.Int64)).collect()

    result = validate_batch(raw, {c: c for c in raw.columns if c != "__source_row"}, "f.parquet")

    assert result.rejected.select("source_row", "reasons").rows() == [(1, ["bad_type:unit_price"])]
    assert result.valid.select("quantity", "unit_price").rows() == [
        (2, Decimal("19.5000")),
        (3, Decimal("4.2500")),
    ]


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (["date", "order_date", "quantity", "unit_price", "region"], "'order_date' and 'date'"),
        (["order_ts", "quantity", "unit_price", "price", "region"], "'unit_price' and 'price'"),
        (["order_ts", "quantity", "unit_price", "region", "region_duplicated_0"], "'region'"),
    ],
)
def test_two_columns_for_one_field_are_refused_not_chosen_silently(
    header: list[str], says: str
) -> None:
    with pytest.raises(AmbiguousColumnError, match=says):
        map_columns("f.csv", header)


def test_a_symlinked_landing_file_keeps_its_own_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "blob-7f3a").write_text("x", encoding="utf-8")
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "sales_2024-01-05.csv").symlink_to(store / "blob-7f3a")

    assert [p.name for p in discover_sources([landing])] == ["sales_2024-01-05.csv"]
