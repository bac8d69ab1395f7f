"""Parquet and JSON Lines as text, without letting a float decide what a price is.

Typed values become the text a person would have written: decimals without padding zeros,
float32 widened first so an inexact value shows its noise (and is rejected, never rounded),
nested values as JSON. JSON numbers keep the exact digits of the file: a JSON parser turns
`19.999999999999999999` into the double 20.0, so the digits are taken from the line itself.

A JSON Lines file is line-independent, so a line that is not a JSON object is one bad record
(kept whole, for validation to reject), not a bad file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

import polars as pl

from salesflow.contract import RECORD_TEXT
from salesflow.errors import UnreadableSourceError

_NUMBER: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """One typed column as the text a person would have written."""
    column = pl.col(name)
    if dtype == pl.String:
        return column
    if dtype == pl.Float32:
        return column.cast(pl.Float64).cast(pl.String)
    if isinstance(dtype, pl.Decimal):
        text = column.cast(pl.String)
        return text.str.replace(r"(\.\d*?)0+$", "${1}").str.replace(r"\.$", "")
    if dtype.is_nested():
        # {"name": value} -> value, encoded by Polars: vectorised JSON of any nested value.
        prefix = len(json.dumps(name)) + 2
        encoded = pl.struct(column).struct.json_encode()
        return pl.when(column.is_not_null()).then(encoded.str.slice(prefix).str.head(-1))
    return column.cast(pl.String)


def scan_parquet_as_text(path: Path) -> pl.LazyFrame:
    """The file named, never a glob of it: `sales[1].parquet` must not read `sales1.parquet`."""
    frame = pl.scan_parquet(path, glob=False)
    schema = frame.collect_schema()
    return frame.select(as_text(name, dtype).alias(name) for name, dtype in schema.items())


def read_jsonl_as_text(path: Path) -> pl.DataFrame:
    """JSON Lines records as text columns plus RECORD_TEXT; numbers keep the digits written.

    A line that is not a JSON object is a record of its own, all its columns null and its text
    in RECORD_TEXT, for validation to reject as `malformed_record`. The file fails as a whole
    only when no line at all is an object. The bytes are read here, never through a path a
    reader could expand as a glob.
    """
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is ignored
    try:
        # The common case: every line is an object, read in one vectorised pass.
        records = pl.read_ndjson(data, infer_schema_length=None)
    except pl.exceptions.PolarsError as error:
        return _read_with_malformed_lines(path, data, error)
    text = _with_written_numbers(path, records, lambda: _non_blank(_lines(data.decode())))
    return text.with_columns(pl.lit(None, pl.String).alias(RECORD_TEXT))


def _with_written_numbers(
    path: Path, records: pl.DataFrame, lines: Callable[[], pl.Series]
) -> pl.DataFrame:
    """Records as text, numeric columns with the digits of their `lines` (one per record)."""
    numeric = [name for name, dtype in records.schema.items() if dtype.is_numeric()]
    text = records.select(
        as_text(name, dtype).alias(name) for name, dtype in records.schema.items()
    )
    if not numeric:
        return text
    written = lines()
    if written.len() != text.height:
        raise UnreadableSourceError(
            str(path),
            f"records could not be delimited consistently ({text.height} parsed, "
            f"{written.len()} lines); write one JSON object per line",
        )
    return text.with_columns(
        pl.coalesce(_written_number(written, name), pl.col(name)).alias(name) for name in numeric
    )


def _read_with_malformed_lines(
    path: Path, data: bytes, error: pl.exceptions.PolarsError
) -> pl.DataFrame:
    """The slow path, taken only when reading the whole file failed: find the lines that are
    JSON objects (vectorised), read those, and keep the others as RECORD_TEXT rows in place.

    Re-raises `error` (the batch fails with the reader's message) when no line is an object,
    or when the object lines cannot be read together (a column holding an object on one line
    and a list on another).
    """
    lines = _non_blank(_lines(data.decode("utf-8", errors="replace"))).str.strip_suffix("\r")
    # A valid JSON text whose first character is `{` is an object; json_path_match gives null
    # for any line that is not valid JSON, without failing the whole column.
    is_object = (
        lines.str.contains(r"^[ \t]*\{")
        & lines.str.json_path_match("$").is_not_null()
        & ~_undecodable(data, lines)
    )
    if not is_object.any():
        raise error
    objects = lines.filter(is_object)
    try:
        records = _read_lines(objects)
    except pl.exceptions.PolarsError:
        # Lines the reader refuses though json_path_match accepted them (rare, e.g. an integer
        # of more than 38 digits), or a column of conflicting types (then re-raised).
        readable = _readable(objects)
        if readable.all() or not readable.any():
            raise error from None
        is_object = is_object.scatter(is_object.arg_true().filter(~readable), False)
        objects = objects.filter(readable)
        records = _read_lines(objects)
    text = _with_written_numbers(path, records, lambda: objects)
    position = pl.Series("__line", is_object.arg_true())
    malformed = pl.DataFrame(
        {"__line": (~is_object).arg_true(), RECORD_TEXT: lines.filter(~is_object)}
    )
    return (
        pl.concat(
            [text.with_columns(position, pl.lit(None, pl.String).alias(RECORD_TEXT)), malformed],
            how="diagonal",
        )
        .sort("__line")
        .drop("__line")
    )


def _read_lines(lines: pl.Series) -> pl.DataFrame:
    return pl.read_ndjson(lines.str.join("\n").item().encode(), infer_schema_length=None)


def _readable(objects: pl.Series) -> pl.Series:
    """Which of these object lines the reader reads, found by halving the lines that fail
    together; taken only when the read of all of them failed. Lines that read alone but not
    together (a column of conflicting types) all count as readable.
    """
    try:
        _read_lines(objects)
    except pl.exceptions.PolarsError:
        if objects.len() == 1:
            return pl.Series([False])
        half = objects.len() // 2
        return pl.concat([_readable(objects.head(half)), _readable(objects.slice(half))])
    return pl.Series([True] * objects.len())


def _undecodable(data: bytes, lines: pl.Series) -> pl.Series:
    """Lines holding bytes that are not UTF-8 (decoded as U+FFFD, as a U+FFFD written in the
    file is too): only lines showing U+FFFD are checked against their bytes, in Python, and
    only on the slow path."""
    suspect = lines.str.contains("\ufffd", literal=True)
    if not suspect.any():
        return suspect
    byte_lines = [line for line in data.split(b"\n") if line.strip(b" \t\r")]
    flags = suspect.to_list()
    for index in suspect.arg_true().to_list():
        try:
            byte_lines[index].decode("utf-8")
            flags[index] = False
        except UnicodeDecodeError:
            pass
    return pl.Series(flags, dtype=pl.Boolean)


def _lines(text: str) -> pl.Series:
    """Physical lines, as the reader splits them: on LF only (a raw U+2028 or U+0085 may sit
    inside a JSON string); a CR ending a CRLF line is still there."""
    return pl.Series("line", text.split("\n"), pl.String)


def _non_blank(lines: pl.Series) -> pl.Series:
    """Lines of nothing but JSON whitespace are not records."""
    return lines.filter(lines.str.strip_chars(" \t\r") != "")


def _written_number(lines: pl.Series, key: str) -> pl.Series:
    """The digits of a top-level number member `key` as written in each line (else null)."""
    escaped = json.dumps(key).replace("\\", "\\\\")
    escaped = "".join(f"\\{c}" if c in ".^$*+?()[]{}|" else c for c in escaped)
    pattern = rf"(?:^|[{{,])\s*{escaped}\s*:\s*({_NUMBER})\s*[,}}]"
    return lines.str.extract(pattern, 1)
