"""CSV records with their field counts, so a ragged record is rejected instead of silently padded.

Polars pads a short record with nulls and can truncate a long one, but never says which records
were ragged. A second, cheap pass reads the file as physical lines, joins the lines of quoted
multi-line records (by quote parity) and counts the separators outside quotes: all vectorised.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import polars as pl

from salesflow.errors import UnreadableSourceError

FIELD_COUNT: Final = "__field_count"
"""Column of a staged CSV batch: how many fields the record had (null for other formats)."""

_QUOTED: Final = r'"(?:[^"]|"")*"'

_WIDE_ENCODINGS: Final = {
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _open(path: Path) -> BinaryIO:
    """Gzip is recognised by its magic bytes, as the CSV reader does, not by the file name."""
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    opened: Any = gzip.open(path, "rb") if compressed else path.open("rb")  # noqa: SIM115 (caller closes)
    return cast(BinaryIO, opened)


def refuse_wide_encodings(path: Path) -> None:
    """A UTF-16 file is not text to a UTF-8 reader: fail the batch with what to do."""
    try:
        with _open(path) as handle:
            start = handle.read(2)
    except (OSError, EOFError):
        return  # the reader reports a corrupt file in its own words
    if start in _WIDE_ENCODINGS:
        raise UnreadableSourceError(
            str(path), f"file is {_WIDE_ENCODINGS[start]} encoded; re-export it as UTF-8"
        )


def read_csv_records(path: Path) -> pl.DataFrame:
    """All-text records of a CSV file plus FIELD_COUNT; blank lines are not records.

    Invalid UTF-8 bytes become U+FFFD (the validator rejects such records) instead of failing
    the whole file.
    """
    refuse_wide_encodings(path)
    records = pl.read_csv(
        path,
        infer_schema=False,
        encoding="utf8-lossy",
        truncate_ragged_lines=True,
        raise_if_empty=True,
    )
    records = records.rename({name: name.replace("\ufeff", "") for name in records.columns})
    shapes = _align(_record_shapes(_read_text(path)), records.height)
    if shapes is None:
        raise UnreadableSourceError(
            str(path),
            "records could not be told apart: a quote opens and never closes, or a bare quote "
            "sits inside a field; fix the file's quoting",
        )
    frame = pl.concat([records, shapes], how="horizontal")
    return frame.filter(~pl.col("__blank")).drop("__blank")


def _read_text(path: Path) -> str:
    with _open(path) as handle:
        data = handle.read()
    return data.decode("utf-8", errors="replace")


def _record_shapes(text: str) -> pl.DataFrame:
    """For every data record: its field count and whether it is a blank line."""
    lines = pl.Series("line", text.split("\n"), pl.String)
    blank = lines.str.strip_chars("\r\ufeff") == ""
    # The reader skips blank lines before the header, and the newline ending the last line
    # opens no record.
    first = int(blank.arg_min() or 0) if not blank.all() else lines.len()
    lines = lines.slice(first)
    if text.endswith("\n"):
        lines = lines.head(-1)
    unquoted = pl.col("line")
    if '"' in text:
        unquoted = unquoted.str.replace_all(_QUOTED, "")
        quotes = lines.str.count_matches('"')
        # A line continues the previous record while an odd number of quotes is open before it.
        opens_record = (quotes.cum_sum().shift(1, fill_value=0) % 2) == 0
        records = (
            pl.DataFrame({"line": lines, "record": opens_record.cum_sum()})
            .group_by("record", maintain_order=True)
            .agg(pl.col("line").str.join("\n"))
        )
    else:  # no quoting at all, the common case: every line is a record, nothing to join
        records = pl.DataFrame({"line": lines})
    shapes = records.select(
        (unquoted.str.count_matches(",") + 1).cast(pl.Int32).alias(FIELD_COUNT),
        (pl.col("line").str.strip_chars("\r") == "").alias("__blank"),
    )
    return shapes.slice(1)  # the header is not a data record


def _align(shapes: pl.DataFrame, records: int) -> pl.DataFrame | None:
    """The shapes of exactly `records` records, or None when the two passes disagree.

    Trailing blank lines may or may not count as records for the reader; nothing else may
    differ.
    """
    if shapes.height == records:
        return shapes
    extra = shapes.slice(records)
    if shapes.height > records and extra.get_column("__blank").all():
        return shapes.head(records)
    return None
