"""CSV records with their field counts, so a ragged record is rejected instead of silently padded.

Polars pads a short record with nulls and can truncate a long one, but never says which records
were ragged. A second, cheap pass reads the file as physical lines, joins the lines of quoted
multi-line records (by quote parity) and counts the separators outside quotes: all vectorised.
A file without any quote or byte-order mark, the common case, is counted on its bytes with NumPy
instead, without making a string of every line.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import numpy as np
import polars as pl

from salesflow.contract import FIELD_COUNT
from salesflow.errors import UnreadableSourceError

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
    the whole file. `glob=False`: the file named is read, even `sales[1].csv` or `what?.csv`.
    """
    refuse_wide_encodings(path)
    records = pl.read_csv(
        path,
        glob=False,
        infer_schema=False,
        encoding="utf8-lossy",
        truncate_ragged_lines=True,
        raise_if_empty=True,
    )
    records = records.rename({name: name.replace("\ufeff", "") for name in records.columns})
    data = _read_bytes(path)
    if b'"' in data or _BOM in data:
        counted = _record_shapes(data.decode("utf-8", errors="replace"))
    else:
        counted = _plain_record_shapes(data)
    shapes = _align(counted, records.height)
    if shapes is None:
        raise UnreadableSourceError(
            str(path),
            "records could not be told apart: a quote opens and never closes, or a bare quote "
            "sits inside a field; fix the file's quoting",
        )
    blank = shapes.get_column("__blank")
    frame = pl.concat([records, shapes.drop("__blank")], how="horizontal")
    return frame.filter(~blank) if blank.any() else frame


_BOM: Final = "\ufeff".encode()


def _read_bytes(path: Path) -> bytes:
    with _open(path) as handle:
        return handle.read()


def _plain_record_shapes(data: bytes) -> pl.DataFrame:
    """What `_record_shapes` gives, for a file with no quote and no byte-order mark: every
    physical line is a record, so its field count is its commas plus one. Counted with NumPy on
    the bytes (a comma or newline is never part of a multi-byte UTF-8 character)."""
    content = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(content == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [content.size]))
    commas = _per_line(np.flatnonzero(content == ord(",")), starts, ends)
    returns = _per_line(np.flatnonzero(content == ord("\r")), starts, ends)
    blank = (ends - starts) == returns  # empty, or nothing but carriage returns
    # As in _record_shapes: blank lines before the header are skipped, and the newline ending
    # the last line opens no record.
    first = int(np.argmin(blank)) if not blank.all() else blank.size
    last = blank.size - 1 if data.endswith(b"\n") else blank.size
    shapes = pl.DataFrame(
        {
            FIELD_COUNT: pl.Series((commas[first:last] + 1).astype(np.int32)),
            "__blank": pl.Series(blank[first:last]),
        }
    )
    return shapes.slice(1)  # the header is not a data record


def _per_line(positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many of the sorted byte `positions` fall inside each line [start, end)."""
    return np.searchsorted(positions, ends) - np.searchsorted(positions, starts)


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
