"""Validation gives, row for row, what the Polars validation it replaced gave.

`tests/data/validation_digests.json` holds a digest of the exact split (valid rows typed, rejected
rows with reasons and raw JSON) that the Polars rules (commit a0f663e) gave on: every corpus file,
the generator's dirty data at several seeds, formats and time zones, the UCI Online Retail file
through its profile, and a table of the values where DuckDB and Polars differ (Unicode white
space and digits, hour 24, leap seconds, offsets, NUL, U+FFFD, combining marks). The SQL
validation must give the same digests, and the `sales` rows made of the valid ones those the
Polars transform gave (commit 9d4b65a). `python -m tests.test_validation_golden` rewrites the file
(only ever on purpose: a changed digest is a changed contract).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from salesflow import stages
from salesflow.config import load_settings
from salesflow.contract import SOURCE_ROW
from salesflow.profiles import apply_profile, resolve_profile
from salesflow.rules import ValidationRules
from salesflow.sources.generator import generate_sales
from salesflow.transform import TicketBands
from salesflow.validate import ValidationResult, validate_batch
from tests.conftest import REPO

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"
DIGESTS = DATA / "validation_digests.json"
ONLINE_RETAIL = REPO / ".." / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
REGIONS = frozenset({"North", "South", "East", "West", "Central"})
NOT_AFTER = datetime(2025, 6, 1, 12)

# A batch to validate: (raw, column_map, batch_id, rules), made in a scratch folder.
Batch = tuple[pl.DataFrame, dict[str, str], str, ValidationRules]


def frame_digest(*frames: pl.DataFrame) -> str:
    """sha256 of the frames, every value and type included."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(str(frame.schema).encode())
        digest.update(frame.write_ndjson().encode())
    return digest.hexdigest()


def split_digest(result: ValidationResult, sales: pl.DataFrame) -> dict[str, object]:
    """Counts and digests of a split (valid and rejected rows) and of the `sales` rows made of
    it with the default ticket bands."""
    return {
        "valid": result.valid.height,
        "rejected": result.rejected.height,
        "sha256": frame_digest(result.valid, result.rejected),
        "sales_sha256": frame_digest(sales),
    }


def staged(
    source: Path, scratch: Path, profile: str | None = None, columns: dict[str, str] | None = None
) -> tuple[pl.DataFrame, dict[str, str], str]:
    manifest = stages.extract(source, scratch, None, False, profile, columns)
    return pl.read_parquet(manifest.raw_path), manifest.column_map, manifest.batch_id


def corpus_batch(name: str) -> Callable[[Path], Batch]:
    def make(scratch: Path) -> Batch:
        raw, column_map, batch_id = staged(CORPUS / name, scratch)
        return raw, column_map, batch_id, ValidationRules(regions=REGIONS, not_after=NOT_AFTER)

    return make


def generated_batch(seed: int, fmt: str, timezone: str) -> Callable[[Path], Batch]:
    def make(scratch: Path) -> Batch:
        (source,) = generate_sales(
            scratch / "landing", date(2025, 3, 30), 1, 4000, seed=seed, dirty_ratio=0.3, fmt=fmt
        )
        raw, column_map, batch_id = staged(source, scratch / "stage")
        rules = ValidationRules(
            timezone=timezone, regions=REGIONS, not_after=NOT_AFTER, max_quantity=500
        )
        return raw, column_map, batch_id, rules

    return make


def online_retail_batch(scratch: Path) -> Batch:
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"UCI Online Retail file not found at {ONLINE_RETAIL.resolve()}")
    settings = load_settings()
    profile = resolve_profile(settings, "online-retail")
    rules = ValidationRules.from_settings(
        apply_profile(settings, profile), now=datetime(2026, 1, 1)
    )
    raw, column_map, batch_id = staged(
        ONLINE_RETAIL, scratch, "online-retail", dict(profile.columns)
    )
    return raw, column_map, batch_id, rules


# Values where the two engines could part: white space Polars trims and DuckDB's trim does not,
# digits Rust's \d takes and RE2's does not, times and offsets one engine accepts.
PIECES = (
    "1",
    "0",
    "7",
    "12",
    "2.5",
    "3.0",
    "-4",
    "+5",
    "0.0001",
    "1e3",
    "12,50",
    "\u0661\u0662",
    "\uff15",
    "99999999999999999999",
    "000000000000000000001",
    "2025-03-30",
    "2025-03-30T01:30:00",
    "2025-03-30 02:30",
    "2025-03-30T24:00:00",
    "2025-03-30T23:59:60",
    "2025-02-29T10:00:00",
    "2025-03-30T10:00:00.1234567",
    "2025-03-30T10:00:00+24:00",
    "2025-03-30T10:00:00Z",
    "2025-03-30T10:00:00-0530",
    "2025-03-30T10:00+02",
    "2025-03-30T10:00:00+99",
    "0000-01-01T00:00:00",
    "1999-12-31",
    "2025-06-01T12:00:00",
    "2025-06-01T12:00:01",
    "30/03/2025 10:00",
    "2025-03-30T10:00:00+0200",
    "T",
    ":",
    ".",
    "North",
    "north",
    "South",
    "Nowhere",
    " ",
    "\t",
    "\u00a0",
    "\u3000",
    "\u2028",
    "\x85",
    "\u200b",
    "\x00",
    "\ufffd",
    "e\u0301",
    '"',
    "'",
    "\\",
    "{",
    "}",
    "",
)
_COLUMNS = ("order_id", "order_ts", "sku", "quantity", "unit_price", "region", "note")


def pieces_batch(timestamp_format: str | None) -> Callable[[Path], Batch]:
    """Each piece alone, padded with white space, and doubled, in each column of an otherwise
    valid row; then every row twice more, as exact and as trimmed-equal copies."""

    def make(scratch: Path) -> Batch:
        valid_row = ("A1", "2025-03-30T10:00:00", "S1", "2", "9.5", "North", "n")
        values = [*PIECES, *(f"\u3000{p} " for p in PIECES), *(f"{p}{p}" for p in PIECES)]
        rows = [valid_row] + [
            tuple(value if index == column else cell for index, cell in enumerate(valid_row))
            for column in range(len(_COLUMNS))
            for value in values
        ]
        rows += rows[::7] + [tuple(f" {cell}" for cell in row) for row in rows[::11]]
        raw = pl.DataFrame(
            {name: [row[index] for row in rows] for index, name in enumerate(_COLUMNS)},
            schema=dict.fromkeys(_COLUMNS, pl.String),
        ).with_columns(pl.int_range(1, len(rows) + 1, dtype=pl.Int64).alias(SOURCE_ROW))
        rules = ValidationRules(
            timezone="Asia/Kolkata",
            timestamp_format=timestamp_format,
            regions=REGIONS,
            not_after=NOT_AFTER,
            max_quantity=50,
            max_unit_price=Decimal("99.5"),
            max_field_length=24,
        )
        column_map = {name: name for name in _COLUMNS if name != "note"}
        return raw, column_map, "pieces.csv", rules

    return make


def derived_ids_batch(scratch: Path) -> Batch:
    """No order_id column, an empty and a quoted header, values to trim."""
    raw = pl.DataFrame(
        {
            "fecha": ["2025-03-30", "2025-03-30", " 2025-03-31 ", "2025-03-31"],
            "": ["x", "x", "y", None],
            'we"ird': ["1", "1", "2", "2"],
            "precio": ["2", "2", "3.5", "0"],
            "zona": ["North", "North", "South", ""],
            "producto": ["p", "p", "q", "q"],
            SOURCE_ROW: [1, 2, 3, 4],
        }
    )
    column_map = {
        "order_ts": "fecha",
        "quantity": 'we"ird',
        "unit_price": "precio",
        "region": "zona",
        "product": "producto",
        "sku": "producto",
    }
    return raw, column_map, "eu/ventas.csv", ValidationRules(regions=REGIONS, not_after=NOT_AFTER)


def golden_batches() -> dict[str, Callable[[Path], Batch]]:
    batches: dict[str, Callable[[Path], Batch]] = {}
    for path in sorted(CORPUS.iterdir()):
        if path.is_file() and path.name != "expected.json":
            batches[f"corpus/{path.name}"] = corpus_batch(path.name)
    for seed, fmt, timezone in [
        (1, "csv", "UTC"),
        (2, "parquet", "Europe/Madrid"),
        (3, "jsonl", "America/New_York"),
        (4, "csv.gz", "Asia/Kolkata"),
    ]:
        batches[f"generated/{seed}-{fmt}-{timezone}"] = generated_batch(seed, fmt, timezone)
    for fmt in (None, "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S%z"):
        batches[f"pieces/{fmt}"] = pieces_batch(fmt)
    batches["derived-ids"] = derived_ids_batch
    batches["online-retail"] = online_retail_batch
    return batches


def digest_of(make: Callable[[Path], Batch], scratch: Path) -> dict[str, object] | None:
    """The digest of one batch's split; None for a file that fails before validation."""
    try:
        raw, column_map, batch_id, rules = make(scratch)
    except pytest.skip.Exception:
        raise
    except Exception:  # a file that fails as a whole batch has no rows to validate
        return None
    result = validate_batch(raw, column_map, batch_id, rules, TicketBands())
    return split_digest(result, result.sales)


def recorded() -> dict[str, dict[str, object] | None]:
    return json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("name", list(golden_batches()))
def test_validation_gives_the_recorded_split(name: str, tmp_path: Path) -> None:
    expected = recorded()[name]
    assert digest_of(golden_batches()[name], tmp_path) == expected


def test_every_recorded_batch_is_still_checked() -> None:
    assert set(recorded()) == set(golden_batches())
    splits = [digest for digest in recorded().values() if digest is not None]
    assert len(splits) >= 50
    assert sum(int(d["valid"]) for d in splits) > 0 and sum(int(d["rejected"]) for d in splits) > 0


def _write_digests() -> Iterator[str]:
    digests = {}
    for name, make in golden_batches().items():
        with tempfile.TemporaryDirectory() as scratch:
            digests[name] = digest_of(make, Path(scratch))
        yield f"{name}: {digests[name]}"
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    for line in _write_digests():
        print(line, file=sys.stderr)
