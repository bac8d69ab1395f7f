"""A JSON Lines line that is not a JSON object is one rejected record, not a failed file."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from salesflow.contract import RECORD_TEXT
from salesflow.errors import UnreadableSourceError
from salesflow.sources.files import map_columns, stage_source
from salesflow.sources.typed_files import read_jsonl_as_text
from salesflow.validate import ValidationResult, validate_batch


def record(order_id: str, price: object = 1.5, **extra: object) -> str:
    """One good JSON Lines record: 2 x `price` in North."""
    fields = {
        "order_id": order_id,
        "order_ts": "2024-05-10T10:00:00",
        "sku": "SKU-1",
        "quantity": 2,
        "unit_price": price,
        "region": "North",
        **extra,
    }
    return json.dumps(fields, ensure_ascii=False)


def stage_and_validate(tmp_path: Path, name: str, content: bytes) -> tuple[int, ValidationResult]:
    source = tmp_path / name
    source.write_bytes(content)
    staged = tmp_path / "staging" / "raw.parquet"
    rows, header = stage_source(source, staged)
    raw = pl.read_parquet(staged)
    return rows, validate_batch(raw, map_columns(name, header), name)


def test_a_truncated_line_is_rejected_alone_and_the_other_lines_load(tmp_path: Path) -> None:
    truncated = '{"order_id": "x", "order_ts'
    lines = [record(f"J{n}") for n in range(1, 50)] + [truncated]
    lines += [record(f"J{n}") for n in range(51, 102)]
    content = ("\n".join(lines) + "\n").encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 101
    assert result.rejected.rows() == [(50, ["malformed_record"], json.dumps(truncated))]
    assert json.loads(result.rejected.item(0, "raw")) == truncated
    assert result.valid.height == 100
    assert result.valid["source_row"].to_list() == [*range(1, 50), *range(51, 102)]
    assert result.valid["order_id"].to_list() == [f"J{n}" for n in range(1, 102) if n != 50]


@pytest.mark.parametrize(
    ("line", "reasons"),
    [
        ("[1, 2]", ["malformed_record"]),
        ("42", ["malformed_record"]),
        ('"just text"', ["malformed_record"]),
        ("null", ["malformed_record"]),
        ('{"order_id": "J9"} trailing', ["malformed_record"]),
        ('{"order_id": "J9", "unit_price": NaN}', ["malformed_record"]),
        ('{"order_id": "J9",}', ["malformed_record"]),
        ("{'order_id': 'J9'}", ["malformed_record"]),
        ('{"order_id": "J9\x00"}', ["malformed_record", "bad_encoding"]),
        ('\u00a0{"order_id": "J9"}', ["malformed_record"]),
    ],
    ids=[
        "array",
        "number",
        "string",
        "null",
        "trailing-garbage",
        "nan",
        "trailing-comma",
        "single-quotes",
        "raw-nul",
        "non-json-whitespace",
    ],
)
def test_a_line_that_is_no_json_object_is_a_malformed_record(
    tmp_path: Path, line: str, reasons: list[str]
) -> None:
    content = "\n".join([record("J1"), line, record("J3")]).encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 3
    assert result.rejected.rows() == [(2, reasons, json.dumps(line, ensure_ascii=False))]
    assert json.loads(result.rejected.item(0, "raw")) == line
    assert result.valid.select("order_id", "source_row").rows() == [("J1", 1), ("J3", 3)]


def test_invalid_utf8_on_one_line_rejects_that_line_with_its_text_as_decoded(
    tmp_path: Path,
) -> None:
    latin1 = record("J2", product="Camión").encode().replace("ó".encode(), b"\xf3")
    written_fffd = record("J3", product="\ufffd")  # a U+FFFD written in the file is UTF-8
    content = b"\n".join([record("J1").encode(), latin1, written_fffd.encode(), b"{"]) + b"\n"

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 4
    assert result.rejected.select("source_row", "reasons").rows() == [
        (2, ["malformed_record", "bad_encoding"]),
        (3, ["bad_encoding"]),
        (4, ["malformed_record"]),
    ]
    raw = [json.loads(text) for text in result.rejected["raw"]]
    assert raw[0] == record("J2", product="Cami\ufffdn")  # the line, as a JSON string
    assert raw[1] == {  # a readable record: keyed by its fields, as ever
        "order_id": "J3",
        "order_ts": "2024-05-10T10:00:00",
        "sku": "SKU-1",
        "quantity": "2",
        "unit_price": "1.5",
        "region": "North",
        "product": "\ufffd",
    }
    assert raw[2] == "{"
    assert result.valid["order_id"].to_list() == ["J1"]


def test_blank_lines_are_not_records_and_crlf_is_not_part_of_the_raw_text(
    tmp_path: Path,
) -> None:
    content = f"\r\n{record('J1')}\r\n  \t\r\n{{oops\r\n\r\n{record('J3')}\r\n".encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 3
    assert result.rejected.rows() == [(2, ["malformed_record"], '"{oops"')]
    assert result.valid.select("order_id", "source_row").rows() == [("J1", 1), ("J3", 3)]


def test_malformed_lines_are_no_duplicates_of_each_other_nor_of_an_empty_object(
    tmp_path: Path,
) -> None:
    content = "\n".join(["{bad", "{}", "{bad", "{}", record("J5")]).encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    missing = [
        "missing_sku",
        "missing_order_ts",
        "missing_quantity",
        "missing_unit_price",
        "missing_region",
    ]
    assert rows == 5
    assert result.rejected.select("source_row", "reasons").rows() == [
        (1, ["malformed_record"]),
        (2, ["missing_order_id", *missing]),
        (3, ["malformed_record"]),
        (4, ["missing_order_id", *missing, "duplicate"]),
    ]
    assert result.valid["order_id"].to_list() == ["J5"]


def test_a_line_the_reader_refuses_though_it_is_valid_json_is_malformed_too(
    tmp_path: Path,
) -> None:
    # 43 digits: valid JSON, but more than the reader's 128-bit integers hold.
    huge = record("J2", customer_id=int("9" * 43))
    content = "\n".join([record("J1"), huge, "[]", record("J4")]).encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 4
    assert result.rejected.rows() == [
        (2, ["malformed_record"], json.dumps(huge)),
        (3, ["malformed_record"], '"[]"'),
    ]
    assert result.valid["order_id"].to_list() == ["J1", "J4"]


def test_exact_digits_are_kept_when_a_line_is_malformed(tmp_path: Path) -> None:
    source = tmp_path / "sales.jsonl"
    source.write_text(
        '{"unit_price": 19.999999999999999999, "quantity": 10}\n'
        "oops\n"
        '{"quantity":2.5,"unit_price":1e2}\n',
        encoding="utf-8",
    )

    text = read_jsonl_as_text(source)

    assert text.rows() == [
        ("19.999999999999999999", "10", None),
        (None, None, "oops"),
        ("1e2", "2.5", None),
    ]
    assert text.columns == ["unit_price", "quantity", RECORD_TEXT]


def test_a_file_with_good_lines_only_has_no_record_text(tmp_path: Path) -> None:
    source = tmp_path / "sales.jsonl"
    source.write_text(record("J1") + "\n" + record("J2") + "\n", encoding="utf-8")

    text = read_jsonl_as_text(source)

    assert text.get_column(RECORD_TEXT).null_count() == 2
    assert text["unit_price"].to_list() == ["1.5", "1.5"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"order_id": "x", "order_ts\n[1]\n\n', "cannot be read: Syntax at character"),
        (b"1\n2\n", "cannot be read: NDJSON line expected to contain JSON object: i64"),
        (b'{"a": {"b": 1}}\n{"a": [1]}\n', "cannot be read: failed to determine supertype"),
    ],
    ids=["no-object-line", "numbers-only", "conflicting-types"],
)
def test_the_file_fails_only_when_no_line_can_be_read_as_an_object(
    tmp_path: Path, content: bytes, says: str
) -> None:
    source = tmp_path / "broken.jsonl"
    source.write_bytes(content)

    with pytest.raises(UnreadableSourceError) as caught:
        stage_source(source, tmp_path / "staging" / "raw.parquet")

    assert caught.value.problem.startswith(says)
    assert "\n" not in str(caught.value)


def test_a_mostly_malformed_file_is_left_to_the_reject_share_limit(tmp_path: Path) -> None:
    content = "\n".join([record("J1"), "x", "y", "z"]).encode()

    rows, result = stage_and_validate(tmp_path, "sales.jsonl", content)

    assert rows == 4
    assert result.reason_counts() == {"malformed_record": 3}
    assert result.valid.select("order_id", "unit_price").rows() == [("J1", Decimal("1.5"))]
