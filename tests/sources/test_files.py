"""Tests of landing files: discovery, header mapping, staging as text, and fingerprints."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from salesflow.errors import MissingColumnError, UnreadableSourceError, UsageError
from salesflow.sources.files import (
    SOURCE_ROW,
    discover_sources,
    file_sha256,
    map_columns,
    source_format,
    stage_source,
)
from salesflow.validate import validate_batch

COURSE_CSV = (
    "fecha,producto,cantidad,precio_unitario,region\n"
    "2024-01-05,Laptop,2,999.99,Norte\n"
    "2024-01-06, Mouse ,-1,19.99,Sur\n"
)
COURSE_HEADER = ["fecha", "producto", "cantidad", "precio_unitario", "region"]
COURSE_STAGED = pl.DataFrame(
    {
        SOURCE_ROW: [1, 2],
        "fecha": ["2024-01-05", "2024-01-06"],
        "producto": ["Laptop", " Mouse "],
        "cantidad": ["2", "-1"],
        "precio_unitario": ["999.99", "19.99"],
        "region": ["Norte", "Sur"],
    },
    schema={SOURCE_ROW: pl.Int64, **dict.fromkeys(COURSE_HEADER, pl.String)},
)


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def stage(path: Path) -> tuple[int, list[str], pl.DataFrame]:
    staged = path.parent / "staging" / f"{path.name}.parquet"
    rows, header = stage_source(path, staged)
    return rows, header, pl.read_parquet(staged)


# --- formats and discovery -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("sales.csv", "csv"),
        ("SALES.CSV", "csv"),
        ("sales.csv.gz", "csv"),
        ("sales.Csv.Gz", "csv"),
        ("sales.parquet", "parquet"),
        ("sales.jsonl", "jsonl"),
        ("sales.ndjson", "jsonl"),
        ("sales.json", None),
        ("sales.txt", None),
        ("sales.gz", None),
        ("sales.jsonl.gz", None),
        ("sales.csv.bak", None),
        ("sales", None),
    ],
)
def test_source_format_comes_from_the_file_name(name: str, fmt: str | None) -> None:
    assert source_format(Path(name)) == fmt


def test_directory_gives_its_supported_files_in_name_order(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for name in ["c.jsonl", "a.csv", "notes.txt", "b.parquet", "d.csv.gz", "e.ndjson", "f.json"]:
        write(landing / name, "x")

    found = discover_sources([landing])

    assert [p.name for p in found] == ["a.csv", "b.parquet", "c.jsonl", "d.csv.gz", "e.ndjson"]
    assert all(p.is_absolute() for p in found)


def test_files_and_directories_are_combined_and_a_repeated_file_counted_once(
    tmp_path: Path,
) -> None:
    single = write(tmp_path / "one" / "z.csv", "x")
    write(tmp_path / "two" / "a.csv", "x")
    write(tmp_path / "two" / "b.jsonl", "x")

    found = discover_sources([single, tmp_path / "two", tmp_path / "one" / ".." / "one" / "z.csv"])

    assert found == [
        single.resolve(),
        (tmp_path / "two" / "a.csv").resolve(),
        (tmp_path / "two" / "b.jsonl").resolve(),
    ]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        discover_sources([tmp_path / "nope.csv"])


def test_unsupported_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unsupported file type"):
        discover_sources([write(tmp_path / "sales.xlsx", "x")])


@pytest.mark.parametrize("contents", [[], ["readme.txt", "data.json"]])
def test_directory_without_supported_files_is_a_usage_error(
    tmp_path: Path, contents: list[str]
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in contents:
        write(landing / name, "x")

    with pytest.raises(UsageError, match="no supported files inside"):
        discover_sources([landing])


def test_two_sources_with_the_same_file_name_are_a_usage_error(tmp_path: Path) -> None:
    first = write(tmp_path / "north" / "sales.csv", "x")
    second = write(tmp_path / "south" / "sales.csv", "x")

    with pytest.raises(UsageError, match="same file name") as caught:
        discover_sources([first, tmp_path / "south"])

    assert str(second) in str(caught.value)
    assert str(first) in str(caught.value)


# --- header mapping --------------------------------------------------------------------------


def test_course_headers_map_with_product_filling_sku() -> None:
    assert map_columns("ventas.csv", COURSE_HEADER) == {
        "order_ts": "fecha",
        "product": "producto",
        "sku": "producto",
        "quantity": "cantidad",
        "unit_price": "precio_unitario",
        "region": "region",
    }


def test_headers_match_case_insensitively_trimmed_and_without_bom() -> None:
    header = ["\ufeffFECHA ", " Producto", "Cantidad", "PRECIO_UNITARIO", "  Region  "]

    mapping = map_columns("ventas.csv", header)

    assert mapping == {
        "order_ts": "\ufeffFECHA ",
        "product": " Producto",
        "sku": " Producto",
        "quantity": "Cantidad",
        "unit_price": "PRECIO_UNITARIO",
        "region": "  Region  ",
    }


def test_canonical_header_wins_over_an_alias_and_sku_is_not_overwritten() -> None:
    header = ["date", "order_ts", "qty", "Quantity", "price", "unit_price", "zona", "region"]
    header += ["codigo", "producto", "pedido", "cliente", "categoria"]

    mapping = map_columns("f.csv", header)

    assert mapping == {
        "order_id": "pedido",
        "order_ts": "order_ts",
        "customer_id": "cliente",
        "sku": "codigo",
        "product": "producto",
        "category": "categoria",
        "quantity": "Quantity",
        "unit_price": "unit_price",
        "region": "region",
    }


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (["fecha", "producto", "cantidad", "region"], "missing required column 'unit_price'"),
        (
            ["fecha", "producto"],
            "missing required columns 'quantity', 'unit_price', 'region'",
        ),
        ([], "missing required columns 'order_ts', 'quantity', 'unit_price', 'region'"),
    ],
)
def test_missing_required_column_is_named_with_what_was_found(
    header: list[str], missing: str
) -> None:
    with pytest.raises(MissingColumnError) as caught:
        map_columns("ventas.csv", header)

    found = ", ".join(header) or "no columns"
    assert caught.value.source == "ventas.csv"
    assert str(caught.value) == f"ventas.csv: {missing} (found: {found})"


# --- staging ---------------------------------------------------------------------------------


def test_course_csv_is_staged_as_text_with_one_based_source_rows(tmp_path: Path) -> None:
    rows, header, staged = stage(write(tmp_path / "ventas.csv", COURSE_CSV))

    assert rows == 2
    assert header == COURSE_HEADER
    assert_frame_equal(staged, COURSE_STAGED)


def test_utf8_bom_is_dropped_from_the_first_header(tmp_path: Path) -> None:
    rows, header, staged = stage(write(tmp_path / "ventas.csv", "\ufeff" + COURSE_CSV))

    assert rows == 2
    assert header == COURSE_HEADER
    assert_frame_equal(staged, COURSE_STAGED)


def test_gzipped_csv_is_staged_like_the_plain_file(tmp_path: Path) -> None:
    source = write(tmp_path / "ventas.csv.gz", gzip.compress(COURSE_CSV.encode()))

    rows, header, staged = stage(source)

    assert (rows, header) == (2, COURSE_HEADER)
    assert_frame_equal(staged, COURSE_STAGED)


def test_parquet_values_are_staged_as_text(tmp_path: Path) -> None:
    source = tmp_path / "sales.parquet"
    pl.DataFrame(
        {
            "order_ts": [dt.datetime(2024, 1, 5, 10, 30), None],
            "quantity": [2, -1],
            "unit_price": [19.99, 0.5],
            "amount": [Decimal("12.5"), Decimal("1")],
            "region": ["North", "South"],
        },
        schema_overrides={"amount": pl.Decimal(10, 2)},
    ).write_parquet(source)

    rows, header, staged = stage(source)

    assert rows == 2
    assert header == ["order_ts", "quantity", "unit_price", "amount", "region"]
    assert staged.schema == pl.Schema({SOURCE_ROW: pl.Int64, **dict.fromkeys(header, pl.String)})
    assert staged.rows() == [
        (1, "2024-01-05 10:30:00.000000", "2", "19.99", "12.50", "North"),
        (2, None, "-1", "0.5", "1.00", "South"),
    ]


def test_jsonl_values_are_staged_as_text(tmp_path: Path) -> None:
    source = write(
        tmp_path / "sales.jsonl",
        '{"order_ts": "2024-01-05", "quantity": 2, "unit_price": "12.50", "region": "N"}\n'
        '{"order_ts": "2024-01-06", "quantity": "3", "unit_price": 1.5}\n',
    )

    rows, header, staged = stage(source)

    assert rows == 2
    assert header == ["order_ts", "quantity", "unit_price", "region"]
    assert staged.rows() == [
        (1, "2024-01-05", "2", "12.50", "N"),
        (2, "2024-01-06", "3", "1.5", None),
    ]


def test_source_row_counts_records_not_lines(tmp_path: Path) -> None:
    source = write(tmp_path / "notes.csv", 'a,b\n"two\nlines",1\nx,2\n')

    rows, _, staged = stage(source)

    assert rows == 2
    assert staged.rows() == [(1, "two\nlines", "1"), (2, "x", "2")]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("ventas.csv", COURSE_CSV.splitlines(keepends=True)[0]),
        ("ventas_bom.csv", "\ufeff" + COURSE_CSV.splitlines(keepends=True)[0]),
        ("ventas.csv.gz", gzip.compress(COURSE_CSV.splitlines(keepends=True)[0].encode())),
    ],
)
def test_header_only_file_stages_zero_rows(tmp_path: Path, name: str, content) -> None:
    rows, header, staged = stage(write(tmp_path / name, content))

    assert rows == 0
    assert header == COURSE_HEADER
    assert staged.height == 0
    assert staged.columns == [SOURCE_ROW, *COURSE_HEADER]


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"a": list(range(100)), "b": ["x"] * 100}).write_parquet(buffer)
    return buffer.getvalue()


UNREADABLE = [
    ("zero.csv", b"", "empty"),
    ("zero.csv.gz", b"", "empty"),
    ("zero.parquet", b"", "Parquet"),
    ("zero.jsonl", b"", ""),
    ("latin1.csv", "fecha,producto\n2024-01-05,Cami\u00f3n\n".encode("latin-1"), "UTF-8"),
    ("long_row.csv", b"a,b\n1,2\n3,4,5\n", "more fields"),
    pytest.param(
        "short_row.csv",
        b"a,b,c\n1,2,3\n4,5\n",
        "",
        marks=pytest.mark.xfail(
            strict=True,
            reason="Polars pads a short record with nulls; rejecting ragged records one by one "
            "is the data-contract issue's work (#3)",
        ),
        id="short_row.csv",
    ),
    ("garbage.parquet", b"PAR1 this is not parquet at all", "Parquet"),
    ("cut.parquet", _parquet_bytes()[:-40], "Parquet"),
    ("cut.csv.gz", gzip.compress(COURSE_CSV.encode() * 50)[:-20], "corrupt or truncated"),
    ("head.csv.gz", gzip.compress(COURSE_CSV.encode() * 50)[:30], "corrupt or truncated"),
    ("broken.jsonl", b'{"a": "1"}\n{"a": \n', ""),
]


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [pytest.param(*case, id=case[0]) if type(case) is tuple else case for case in UNREADABLE],
)
def test_unreadable_file_is_one_line_batch_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    source = write(tmp_path / name, content)
    staged = tmp_path / "staging" / f"{name}.parquet"

    with pytest.raises(UnreadableSourceError) as caught:
        stage_source(source, staged)

    message = str(caught.value)
    assert caught.value.source == str(source)
    assert message.startswith(f"{source}: ")
    assert "\n" not in message
    assert says in message
    assert not staged.exists()


def test_jsonl_with_utf8_bom_is_read(tmp_path: Path) -> None:
    source = write(tmp_path / "sales.jsonl", '\ufeff{"a": "1"}\n{"a": "2"}\n')

    rows, header, staged = stage(source)

    assert (rows, header) == (2, ["a"])
    assert staged.rows() == [(1, "1"), (2, "2")]


def test_staged_course_csv_validates_unchanged(tmp_path: Path) -> None:
    _, header, staged = stage(write(tmp_path / "ventas.csv", "\ufeff" + COURSE_CSV))

    result = validate_batch(staged, map_columns("ventas.csv", header), "ventas.csv")

    assert result.rejected.height == 0
    assert result.valid.select("order_id", "sku", "product", "quantity", "unit_price").rows() == [
        ("ventas.csv#1", "Laptop", "Laptop", 2, Decimal("999.99")),
        ("ventas.csv#2", "Mouse", "Mouse", -1, Decimal("19.99")),
    ]


# --- fingerprints ----------------------------------------------------------------------------


def test_file_sha256_is_the_content_digest_and_changes_with_the_content(tmp_path: Path) -> None:
    source = write(tmp_path / "ventas.csv", COURSE_CSV)
    before = file_sha256(source)
    copy = write(tmp_path / "copy" / "ventas.csv", COURSE_CSV)

    write(source, COURSE_CSV + "2024-01-07,Pen,1,1,Norte\n")

    assert before == hashlib.sha256(COURSE_CSV.encode()).hexdigest()
    assert file_sha256(copy) == before
    assert file_sha256(source) != before


def test_file_sha256_reads_files_larger_than_one_chunk(tmp_path: Path) -> None:
    content = bytes(range(256)) * 5000  # ~1.2 MiB: more than one 1 MiB read
    source = write(tmp_path / "big.parquet", content)

    assert file_sha256(source) == hashlib.sha256(content).hexdigest()
