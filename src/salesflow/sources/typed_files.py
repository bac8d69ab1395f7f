"""Parquet and JSON Lines as text, without letting a float decide what a price is.

Typed values become the text a person would have written: decimals without padding zeros,
float32 widened first so an inexact value shows its noise (and is rejected, never rounded),
nested values as JSON. JSON numbers keep the exact digits of the file: a JSON parser turns
`19.999999999999999999` into the double 20.0, so the digits are taken from the line itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import polars as pl

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
    frame = pl.scan_parquet(path)
    schema = frame.collect_schema()
    return frame.select(as_text(name, dtype).alias(name) for name, dtype in schema.items())


def read_jsonl_as_text(path: Path) -> pl.DataFrame:
    """JSON Lines records as text columns; numbers keep the digits written in the file."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is ignored
    records = pl.read_ndjson(data, infer_schema_length=None)
    numeric = [name for name, dtype in records.schema.items() if dtype.is_numeric()]
    text = records.select(
        as_text(name, dtype).alias(name) for name, dtype in records.schema.items()
    )
    if not numeric:
        return text
    lines = _record_lines(data)
    if lines.len() != text.height:
        raise UnreadableSourceError(
            str(path),
            f"records could not be delimited consistently ({text.height} parsed, "
            f"{lines.len()} lines); write one JSON object per line",
        )
    return text.with_columns(
        pl.coalesce(_written_number(lines, name), pl.col(name)).alias(name) for name in numeric
    )


def _record_lines(data: bytes) -> pl.Series:
    lines = pl.Series("line", data.decode("utf-8", errors="replace").splitlines(), pl.String)
    return lines.filter(lines.str.strip_chars() != "")


def _written_number(lines: pl.Series, key: str) -> pl.Series:
    """The digits of a top-level number member `key` as written in each line (else null)."""
    escaped = json.dumps(key).replace("\\", "\\\\")
    escaped = "".join(f"\\{c}" if c in ".^$*+?()[]{}|" else c for c in escaped)
    pattern = rf"(?:^|[{{,])\s*{escaped}\s*:\s*({_NUMBER})\s*[,}}]"
    return lines.str.extract(pattern, 1)
