"""Landing files: find them, fingerprint them, and read them as text columns of one batch.

Everything is read as text so that validation, not the reader, decides what a value means, and so
that a rejected row can be quarantined exactly as it arrived.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import polars as pl

from salesflow.contract import (
    CANONICAL_COLUMNS,
    COLUMN_ALIASES,
    FIELD_COUNT,
    INTERNAL_COLUMNS,
    REQUIRED_COLUMNS,
    SOURCE_ROW,
)
from salesflow.errors import (
    AmbiguousColumnError,
    MissingColumnError,
    TransientError,
    UnreadableSourceError,
    UsageError,
)
from salesflow.faults import Cause, cause_of
from salesflow.sources.csv_records import read_csv_records
from salesflow.sources.typed_files import read_jsonl_as_text, scan_parquet_as_text

# Polars renames a repeated header "region" to "region_duplicated_0".
_DUPLICATED: Final = re.compile(r"_duplicated_\d+$")

FORMATS_BY_SUFFIX: Final = {
    ".csv.gz": "csv",
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def source_format(path: Path) -> str | None:
    """The reader a file needs, from its name; None when salesflow does not read it."""
    name = path.name.lower()
    for suffix, fmt in FORMATS_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    return None


def discover_sources(paths: Iterable[Path]) -> list[Path]:
    """Expand files and directories (their supported files, in name order) into batch sources.

    Two files of the same name in different folders are two sources, and two batches (see
    batch_identity).
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and source_format(p))
            if not inside:
                raise UsageError(
                    f"{path}: no supported files inside (expected {_supported_list()})"
                )
            found.extend(inside)
        elif source_format(path) is None:
            raise UsageError(f"{path}: unsupported file type (expected {_supported_list()})")
        else:
            found.append(path)
    return list(dict.fromkeys(source_path(p) for p in found))


def source_path(path: Path) -> Path:
    """A source's identity on disk: absolute and normalised, symlinks kept (absolute(), not
    resolve()), so a symlinked landing file is the source its name says."""
    return Path(os.path.normpath(path.absolute()))


def batch_identity(source: Path, landing_root: Path | None) -> str:
    """The batch id of a source: its path relative to the landing root when it lies under it
    (`sales_2025-02-05.csv`, `eu/sales.csv`), otherwise its absolute path.

    Never the bare file name: `a/sales.csv` and `b/sales.csv` are two batches, and a later run
    of one can never replace the other's rows.
    """
    path = source_path(source)
    if landing_root is not None:
        root = source_path(landing_root)
        if path.is_relative_to(root) and path != root:
            return path.relative_to(root).as_posix()
    return path.as_posix()


def _supported_list() -> str:
    return ", ".join(FORMATS_BY_SUFFIX)


def file_sha256(path: Path) -> str:
    """Content fingerprint: an unchanged file is skipped, a changed one replaces its batch."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalise_header(name: str) -> str:
    """Headers match case-insensitively, trimmed, with any UTF-8 byte-order mark dropped."""
    return name.replace("\ufeff", "").strip().lower()


def map_columns(source: str, header: Sequence[str]) -> dict[str, str]:
    """Map each canonical column onto the input column that holds it (canonical -> input name).

    The course CSV's `producto` fills both product and sku. Two input columns that would give the
    same canonical column, or a repeated header, are an AmbiguousColumnError (never a silent
    choice); a missing required column is a MissingColumnError naming what was found.
    """
    by_normal: dict[str, str] = {}
    for original in header:
        normal = normalise_header(_DUPLICATED.sub("", original))
        if normal in by_normal:
            raise AmbiguousColumnError(
                source, f"column '{normal}' appears more than once; keep one and re-export"
            )
        by_normal[normal] = original
    mapping: dict[str, str] = {}
    for canonical in CANONICAL_COLUMNS:
        matches = [by_normal[alias] for alias in COLUMN_ALIASES[canonical] if alias in by_normal]
        if len(matches) > 1:
            names = " and ".join(f"'{name}'" for name in matches)
            raise AmbiguousColumnError(
                source, f"columns {names} both give {canonical}; keep one and re-export"
            )
        if matches:
            mapping[canonical] = matches[0]
    if "sku" not in mapping and "product" in mapping:
        mapping["sku"] = mapping["product"]
    missing = [column for column in REQUIRED_COLUMNS if column not in mapping]
    if missing:
        found = ", ".join(header) or "no columns"
        names = ", ".join(f"'{column}'" for column in missing)
        plural = "s" if len(missing) > 1 else ""
        raise MissingColumnError(
            source, f"missing required column{plural} {names} (found: {found})"
        )
    return mapping


def map_profile_columns(
    source: str, header: Sequence[str], profile: str, columns: Mapping[str, str]
) -> dict[str, str]:
    """The column map a profile declares (canonical -> input name), instead of aliasing.

    `columns` maps source names (matched as headers are) onto canonical ones; the file's other
    columns are ignored. A mapped column the file lacks, or holds twice, fails the batch naming
    the profile, since the profile, not the file, may be the thing to fix.
    """
    by_normal: dict[str, list[str]] = {}
    for original in header:
        by_normal.setdefault(normalise_header(_DUPLICATED.sub("", original)), []).append(original)
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for source_column, canonical in columns.items():
        found = by_normal.get(normalise_header(source_column), [])
        if len(found) > 1:
            raise AmbiguousColumnError(
                source,
                f"column '{source_column}' of profile '{profile}' appears more than once; "
                "keep one and re-export",
            )
        if found:
            mapping[canonical] = found[0]
        else:
            missing.append(source_column)
    if missing:
        names = ", ".join(f"'{column}'" for column in missing)
        plural = "s" if len(missing) > 1 else ""
        raise MissingColumnError(
            source,
            f"missing column{plural} {names} of profile '{profile}' "
            f"(found: {', '.join(header) or 'no columns'})",
        )
    if "sku" not in mapping and "product" in mapping:
        mapping["sku"] = mapping["product"]
    return {
        canonical: mapping[canonical] for canonical in CANONICAL_COLUMNS if canonical in mapping
    }


def scan_source(path: Path) -> pl.LazyFrame:
    """A lazy, all-text view of one landing file, numbered by data record.

    Columns: the file's own (as text), FIELD_COUNT (CSV only), RECORD_TEXT (JSON Lines only)
    and SOURCE_ROW. Every reader reads exactly the file named: a name is never a glob.
    """
    fmt = source_format(path)
    if fmt == "csv":
        frame = read_csv_records(path).lazy()
    elif fmt == "parquet":
        frame = scan_parquet_as_text(path)
        frame = frame.with_columns(pl.lit(None, pl.Int32).alias(FIELD_COUNT))
    elif fmt == "jsonl":
        frame = read_jsonl_as_text(path).lazy()
        frame = frame.with_columns(pl.lit(None, pl.Int32).alias(FIELD_COUNT))
    else:
        raise UsageError(f"{path}: unsupported file type (expected {_supported_list()})")
    return frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )


def stage_source(path: Path, staged: Path) -> tuple[int, list[str]]:
    """Copy one landing file to a text-typed Parquet file; return (data records, header).

    Streaming keeps memory flat for large files; any read failure becomes one clear batch error.
    """
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        frame = scan_source(path)
        header = [name for name in frame.collect_schema().names() if name not in INTERNAL_COLUMNS]
        frame.sink_parquet(staged, compression="lz4")
        rows = pl.scan_parquet(staged, glob=False).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, UnicodeDecodeError, ValueError, EOFError) as error:
        staged.unlink(missing_ok=True)
        if cause_of(error) in _WRITE_FAULTS:  # the staging disk, not the file: run-wide
            raise
        raise UnreadableSourceError(str(path), describe_read_error(error)) from None
    except OSError as error:
        staged.unlink(missing_ok=True)
        if cause_of(error) in _WRITE_FAULTS:
            raise
        if error.errno is None:  # raised by a decoder (e.g. gzip's "unexpected end of file")
            raise UnreadableSourceError(str(path), describe_read_error(error)) from None
        raise TransientError(f"{path}: {error.strerror or error}") from error
    return int(rows), header


# Faults of writing the staged file, which faults.named_faults turns into run-wide errors.
_WRITE_FAULTS: Final = (Cause.DISK_FULL, Cause.READ_ONLY)


def describe_read_error(error: BaseException) -> str:
    """One line for the user out of a reader's multi-line message."""
    text = str(error).strip()
    lowered = text.lower()
    if isinstance(error, pl.exceptions.NoDataError) or "empty" in lowered:
        return "file is empty (0 bytes or no header): nothing to load"
    if "utf-8" in lowered or "utf8" in lowered or isinstance(error, UnicodeDecodeError):
        return "not valid UTF-8 text; re-export the file as UTF-8"
    if "more fields than defined" in lowered:
        return "a record has more fields than the header; fix the file's quoting or separators"
    if "malformed" in lowered or "could not parse" in lowered:
        return (
            "records could not be told apart: a quote opens and never closes, or a bare quote "
            "sits inside a field; fix the file's quoting"
        )
    if "parquet" in lowered:
        return "not a readable Parquet file (corrupt or truncated)"
    if any(word in lowered for word in ("gzip", "deflate", "decompress", "end of file")):
        return "compressed data is corrupt or truncated"
    first_line = text.splitlines()[0] if text else type(error).__name__
    return f"cannot be read: {first_line}"
