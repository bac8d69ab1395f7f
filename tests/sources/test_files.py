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

from salesflow.contract import FIELD_COUNT, INTERNAL_COLUMNS, RECORD_TEXT, SOURCE_ROW
from salesflow.errors import (
    AmbiguousColumnError,
    MissingColumnError,
    UnreadableSourceError,
    UsageError,
)
from salesflow.sources.files import (
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
        FIELD_COUNT: [5, 5],
    },
    schema={SOURCE_ROW: pl.Int64, **dict.fromkeys(COURSE_HEADER, pl.String), FIELD_COUNT: pl.Int32},
)


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def stage(path: Path) -> tuple[int, list[str], pl.DataFrame]:
    staged = path.parent / "staging" / f"{path.name}.parquet"
    rows, header = stage_source(path, staged)
    return rows, header, pl.read_parquet(staged, glob=False)


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

    assert found == [single, tmp_path / "two" / "a.csv", tmp_path / "two" / "b.jsonl"]


def test_symlinked_landing_file_keeps_its_own_name(tmp_path: Path) -> None:
    target = write(tmp_path / "archive" / "export-0001.csv", "x")
    link = tmp_path / "landing" / "sales_2024-01-05.csv"
    link.parent.mkdir()
    link.symlink_to(target)

    found = discover_sources([tmp_path / "landing"])

    assert [p.name for p in found] == ["sales_2024-01-05.csv"]
    assert found[0].is_absolute()


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


def test_every_alias_maps_and_an_explicit_sku_is_not_overwritten_by_product() -> None:
    header = ["date", "qty", "price", "zona", "codigo", "producto", "pedido", "cliente"]
    header += ["categoria"]

    mapping = map_columns("f.csv", header)

    assert mapping == {
        "order_id": "pedido",
        "order_ts": "date",
        "customer_id": "cliente",
        "sku": "codigo",
        "product": "producto",
        "category": "categoria",
        "quantity": "qty",
        "unit_price": "price",
        "region": "zona",
    }


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            ["date", "order_ts", "quantity", "unit_price", "region"],
            "columns 'order_ts' and 'date' both give order_ts; keep one and re-export",
        ),
        (
            ["order_ts", "qty", "Quantity", "unit_price", "region"],
            "columns 'Quantity' and 'qty' both give quantity; keep one and re-export",
        ),
        (
            ["order_ts", "quantity", "unit_price", "zona", "Region"],
            "columns 'Region' and 'zona' both give region; keep one and re-export",
        ),
        (
            ["order_ts", "quantity", "unit_price", "region", "REGION "],
            "column 'region' appears more than once; keep one and re-export",
        ),
        (
            ["order_ts", "quantity", "unit_price", "region", "notes", "region_duplicated_0"],
            "column 'region' appears more than once; keep one and re-export",
        ),
    ],
    ids=["canonical-and-alias", "alias-and-canonical", "two-aliases", "repeated", "renamed"],
)
def test_two_columns_for_one_canonical_column_are_ambiguous_never_a_silent_choice(
    header: list[str], problem: str
) -> None:
    with pytest.raises(AmbiguousColumnError) as caught:
        map_columns("f.csv", header)

    assert caught.value.source == "f.csv"
    assert caught.value.problem == problem


def test_repeated_csv_header_fails_the_batch_as_ambiguous(tmp_path: Path) -> None:
    source = write(tmp_path / "twice.csv", "fecha,producto,cantidad,cantidad,precio,region\n")
    _, header, _ = stage(source)

    with pytest.raises(AmbiguousColumnError, match="'cantidad' appears more than once"):
        map_columns(str(source), header)


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
    assert staged.schema == pl.Schema(
        {SOURCE_ROW: pl.Int64, **dict.fromkeys(header, pl.String), FIELD_COUNT: pl.Int32}
    )
    assert staged.rows() == [
        (1, "2024-01-05 10:30:00.000000", "2", "19.99", "12.5", "North", None),
        (2, None, "-1", "0.5", "1", "South", None),
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
    assert staged.columns == [SOURCE_ROW, *header, RECORD_TEXT, FIELD_COUNT]
    assert staged.rows() == [
        (1, "2024-01-05", "2", "12.50", "N", None, None),
        (2, "2024-01-06", "3", "1.5", None, None, None),
    ]
    assert staged.schema[FIELD_COUNT] == pl.Int32
    assert staged.schema[RECORD_TEXT] == pl.String


def test_source_row_counts_records_not_lines(tmp_path: Path) -> None:
    source = write(tmp_path / "notes.csv", 'a,b\n"two\nlines",1\nx,2\n')

    rows, _, staged = stage(source)

    assert rows == 2
    assert staged.rows() == [(1, "two\nlines", "1", 2), (2, "x", "2", 2)]


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
    assert staged.columns == [SOURCE_ROW, *COURSE_HEADER, FIELD_COUNT]


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"a": list(range(100)), "b": ["x"] * 100}).write_parquet(buffer)
    return buffer.getvalue()


UTF16_CSV = "fecha,producto\n2024-01-05,Cami\u00f3n\n"

UNREADABLE = [
    ("zero.csv", b"", "file is empty (0 bytes or no header): nothing to load"),
    ("zero.csv.gz", b"", "file is empty (0 bytes or no header): nothing to load"),
    ("blank_lines.csv", b"\n\n\r\n", "file is empty (0 bytes or no header): nothing to load"),
    ("zero.parquet", b"", "not a readable Parquet file (corrupt or truncated)"),
    ("zero.jsonl", b"", ""),
    ("utf16.csv", UTF16_CSV.encode("utf-16"), "file is UTF-16 encoded; re-export it as UTF-8"),
    ("utf16le.csv", b"\xff\xfe" + UTF16_CSV.encode("utf-16-le"), "file is UTF-16 encoded"),
    ("utf16be.csv", b"\xfe\xff" + UTF16_CSV.encode("utf-16-be"), "file is UTF-16 encoded"),
    ("utf16.csv.gz", gzip.compress(UTF16_CSV.encode("utf-16")), "file is UTF-16 encoded"),
    ("garbage.parquet", b"PAR1 this is not parquet at all", "not a readable Parquet file"),
    ("cut.parquet", _parquet_bytes()[:-40], "not a readable Parquet file"),
    ("cut.csv.gz", gzip.compress(COURSE_CSV.encode() * 50)[:-20], "corrupt or truncated"),
    ("head.csv.gz", gzip.compress(COURSE_CSV.encode() * 50)[:30], "corrupt or truncated"),
    ("broken.jsonl", b'{"a": \n\n{"a": "1"\n', "cannot be read: Syntax at character"),
    ("no_objects.jsonl", b'[1, 2]\n"text"\n5\n', "cannot be read: NDJSON line expected"),
    ("latin1.jsonl", b'{"a": "Cami\xf3n"}\n', "not valid UTF-8 text"),
]


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [pytest.param(*case, id=case[0]) for case in UNREADABLE],
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


def test_internal_columns_are_the_source_row_field_count_and_record_text(tmp_path: Path) -> None:
    _, header, staged = stage(write(tmp_path / "ventas.csv", COURSE_CSV))

    assert INTERNAL_COLUMNS == (SOURCE_ROW, FIELD_COUNT, RECORD_TEXT)
    assert not set(INTERNAL_COLUMNS) & set(header)
    assert set(staged.columns) == {*header, SOURCE_ROW, FIELD_COUNT}  # record texts: JSONL only


# --- odd CSV records: staged as read, judged by validation ------------------------------------


def test_latin1_bytes_in_a_utf8_file_are_staged_as_replacement_characters(tmp_path: Path) -> None:
    content = "fecha,producto\n2024-01-05,Cami\u00f3n\n2024-01-06,Cami\u00f3n\n"
    mixed = content.encode()  # UTF-8 ...
    mixed = mixed.replace(
        "Cami\u00f3n".encode(), "Cami\u00f3n".encode("latin-1"), 1
    )  # ... + latin-1

    rows, header, staged = stage(write(tmp_path / "mixed.csv", mixed))

    assert (rows, header) == (2, ["fecha", "producto"])
    assert staged.rows() == [
        (1, "2024-01-05", "Cami\ufffdn", 2),
        (2, "2024-01-06", "Cami\u00f3n", 2),
    ]


def test_nul_byte_is_staged_as_read(tmp_path: Path) -> None:
    rows, _, staged = stage(write(tmp_path / "nul.csv", b"a,b\n1,x\x00y\n2,z\n"))

    assert rows == 2
    assert staged.rows() == [(1, "1", "x\x00y", 2), (2, "2", "z", 2)]


def test_short_record_is_padded_with_nulls_and_keeps_its_field_count(tmp_path: Path) -> None:
    rows, header, staged = stage(write(tmp_path / "short.csv", b"a,b,c\n1,2,3\n4,5\n6\n7,8,9\n"))

    assert (rows, header) == (4, ["a", "b", "c"])
    assert staged.rows() == [
        (1, "1", "2", "3", 3),
        (2, "4", "5", None, 2),
        (3, "6", None, None, 1),
        (4, "7", "8", "9", 3),
    ]


def test_long_record_is_truncated_to_the_header_and_keeps_its_field_count(tmp_path: Path) -> None:
    content = b'a,b\n1,2\n3,4,5\n6,7,\n8,9,"x,y",z\n10,11\n'

    rows, header, staged = stage(write(tmp_path / "long.csv", content))

    assert (rows, header) == (5, ["a", "b"])
    assert staged.rows() == [
        (1, "1", "2", 2),
        (2, "3", "4", 3),
        (3, "6", "7", 3),
        (4, "8", "9", 4),
        (5, "10", "11", 2),
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"a,b\n\n1,2\n\n\n3,4\n\n",
        b"a,b\r\n\r\n1,2\r\n\r\n3,4\r\n\r\n",
        b"a,b\n1,2\n\r\n3,4",
    ],
    ids=["lf", "crlf", "mixed-no-final-newline"],
)
def test_blank_lines_are_not_records_and_take_no_source_row(tmp_path: Path, content: bytes) -> None:
    rows, _, staged = stage(write(tmp_path / "blanks.csv", content))

    assert rows == 2
    assert staged.rows() == [(1, "1", "2", 2), (2, "3", "4", 2)]


def test_blank_lines_before_the_header_are_not_records(tmp_path: Path) -> None:
    rows, header, staged = stage(write(tmp_path / "lead.csv", b"\n\na,b\n1,2\n"))

    assert (rows, header) == (1, ["a", "b"])
    assert staged.rows() == [(1, "1", "2", 2)]


def test_whitespace_only_line_is_a_one_field_record(tmp_path: Path) -> None:
    rows, _, staged = stage(write(tmp_path / "spaces.csv", b"a,b\n1,2\n   \n3,4\n"))

    assert rows == 3
    assert staged.rows() == [(1, "1", "2", 2), (2, "   ", None, 1), (3, "3", "4", 2)]


def test_quoted_separators_newlines_and_crlf_stay_inside_one_field(tmp_path: Path) -> None:
    content = b'a,b,c\r\n"x, y","two\r\nlines","say ""hi"", ok"\r\n1,2,3\r\n'

    rows, _, staged = stage(write(tmp_path / "quoted.csv", content))

    assert rows == 2
    assert staged.rows() == [
        (1, "x, y", "two\r\nlines", 'say "hi", ok', 3),
        (2, "1", "2", "3", 3),
    ]


def test_unit_separator_inside_a_field_is_an_ordinary_character(tmp_path: Path) -> None:
    # The reader's line pass splits on \x1f; data holding that byte must not look ragged.
    rows, _, staged = stage(write(tmp_path / "us.csv", b"a,b,c\n1,x\x1fy,3\n4,5,6\n"))

    assert rows == 2
    assert staged.rows() == [(1, "1", "x\x1fy", "3", 3), (2, "4", "5", "6", 3)]


@pytest.mark.parametrize(
    "content",
    [
        b'a,b,c\n1,Monitor 27",3\n4,5,6\n',  # a bare quote inside an unquoted field
        b'a,b,c\n1,"open,3\n4,5,6\n',  # a quote that never closes
    ],
    ids=["stray-quote", "unbalanced-quote"],
)
def test_broken_quoting_fails_the_batch_with_a_message_about_quoting(
    tmp_path: Path, content: bytes
) -> None:
    source = write(tmp_path / "quotes.csv", content)

    with pytest.raises(UnreadableSourceError) as caught:
        stage_source(source, tmp_path / "staging" / "quotes.parquet")

    assert "\n" not in caught.value.problem
    assert "quot" in caught.value.problem  # says what to fix, not the reader's internals


def test_ragged_undecodable_and_nul_records_are_rejected_with_reasons(tmp_path: Path) -> None:
    content = (
        "fecha,producto,cantidad,precio_unitario,region\n"
        "2024-01-05,Laptop,2,999.99,Norte\n"
        "2024-01-05,Mouse,1,19.99\n"
        "2024-01-05,Mouse,1,19.99,Sur,extra\n"
        "2024-01-05,Cami\u00f3n,1,5,Sur\n"
        "2024-01-05,Pen\x00,1,5,Sur\n"
    ).encode()
    content = content.replace("Cami\u00f3n".encode(), "Cami\u00f3n".encode("latin-1"))
    _, header, staged = stage(write(tmp_path / "ventas.csv", content))

    result = validate_batch(staged, map_columns("ventas.csv", header), "ventas.csv")

    assert result.valid["source_row"].to_list() == [1]
    assert dict(result.rejected.select("source_row", "reasons").iter_rows()) == {
        2: ["ragged_row", "missing_region"],
        3: ["ragged_row"],
        4: ["bad_encoding"],
        5: ["bad_encoding"],
    }


def test_jsonl_with_utf8_bom_is_read(tmp_path: Path) -> None:
    source = write(tmp_path / "sales.jsonl", '\ufeff{"a": "1"}\n{"a": "2"}\n')

    rows, header, staged = stage(source)

    assert (rows, header) == (2, ["a"])
    assert staged.rows() == [(1, "1", None, None), (2, "2", None, None)]


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
