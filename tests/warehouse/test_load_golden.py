"""A sequence of loads leaves the warehouse exactly as the load it replaced left it.

`tests/data/load_digests.json` holds digests of `sales`, `sales_rejected` (reasons and raw),
`batches` (counts, money, status, error) and `daily_sales` after a fixed sequence of loads: every
corpus file, the generator's dirty data at two seeds, a file re-sent with other content under
its name (its old rows and dates replaced) and a file repeating rows other batches hold
(quarantined as loaded already). The digests were recorded with the load of commit 876ba7e,
before the load bounded its reads by the batch's dates and skipped the scans a new batch does
not need; both backends must give them, value for value.
`python -m tests.warehouse.test_load_golden` rewrites the file (only ever on purpose: a changed
digest is a changed warehouse).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from salesflow import stages
from salesflow.errors import SalesflowError
from salesflow.rules import ValidationRules
from salesflow.sources.files import batch_identity, discover_sources
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse
from salesflow.warehouse.base import SourceIndex, Warehouse

DATA = Path(__file__).parents[1] / "data"
CORPUS = DATA / "corpus"
DIGESTS = DATA / "load_digests.json"
REGIONS = frozenset({"North", "South", "East", "West", "Central"})
NOT_AFTER = datetime(2025, 6, 1, 12)

# What each table's digest covers, in a key order that makes the row order unique. Times, run
# ids and paths are left out: they differ from run to run, not from load to load.
TABLES = {
    "sales": "SELECT * FROM sales ORDER BY batch_id, source_row",
    "sales_rejected": (
        "SELECT batch_id, source_row, reasons, raw FROM sales_rejected "
        "ORDER BY batch_id, source_row, raw"
    ),
    "batches": (
        "SELECT batch_id, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, status, "
        "error, contract_version, source_size FROM batches ORDER BY batch_id"
    ),
    "daily_sales": "SELECT * FROM daily_sales ORDER BY order_date, region, category",
}


def _landing(root: Path) -> list[Path]:
    """The sequence's files, in load order, written under `root`: the corpus, then two days of
    dirty generated data at two seeds."""
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    files = discover_sources([corpus])
    for seed in (7, 11):
        files += generate_sales(
            root / f"seed{seed}", date(2025, 3, 29), 2, 1500, seed=seed, dirty_ratio=0.3
        )
    return files


def _run(
    sources: list[Path], warehouse: Warehouse, landing_root: Path, rules: ValidationRules
) -> None:
    """Plan, stage, validate and load the files one by one as a run does (what is loaded is
    read once, at its start); a batch error is recorded as the flow records it."""
    loaded = warehouse.source_index()
    for source in sources:
        _load(source, warehouse, loaded, landing_root, rules)


def _load(
    source: Path,
    warehouse: Warehouse,
    loaded: SourceIndex,
    landing_root: Path,
    rules: ValidationRules,
) -> None:
    started = datetime.now()
    batch_id = batch_identity(source, landing_root)
    try:
        planned = stages.plan(source, batch_id, loaded, profile=None)
        with tempfile.TemporaryDirectory() as staging:
            checked = stages.validate(stages.stage(planned, Path(staging)), rules)
            stages.load(checked, warehouse, None)
    except SalesflowError as error:
        warehouse.record_outcome(stages.failed_outcome(source, error, started, None, batch_id))


def load_sequence(warehouse: Warehouse, root: Path) -> None:
    """The fixed sequence of loads the digests describe."""
    warehouse.ensure_schema()
    rules = ValidationRules(regions=REGIONS, not_after=NOT_AFTER)
    files = _landing(root)
    _run(files, warehouse, root, rules)
    # Re-sent: the first generated day again under its name, with another seed's content:
    # its old rows go and the days it touched, before and now, are recomputed.
    first, later = files[-4], files[-2]
    (resent,) = generate_sales(root / "resent", date(2025, 3, 29), 1, 1000, seed=13)
    shutil.move(resent, first)
    _run([first], warehouse, root, rules)
    # Repeated: half the rows of a loaded day under a new name, quarantined as loaded already.
    lines = later.read_text(encoding="utf-8").splitlines(keepends=True)
    repeat = root / "repeats" / "sales_repeat.csv"
    repeat.parent.mkdir()
    repeat.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    _run([repeat], warehouse, root, rules)


def _plain(value: Any, root: Path) -> Any:
    """A value as the same text on every backend; paths under `root` made relative."""
    if isinstance(value, str):
        return value.replace(str(root), "<root>")
    if isinstance(value, (Decimal, date)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, root) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item, root) for key, item in sorted(value.items())}
    return value


def warehouse_digests(warehouse: Warehouse, root: Path) -> dict[str, dict[str, object]]:
    """Row count and sha256 of each table's rows (see TABLES)."""
    digests: dict[str, dict[str, object]] = {}
    for table, sql in TABLES.items():
        rows = [_plain(list(row), root) for row in warehouse.fetch(sql)]
        text = "\n".join(json.dumps(row, default=str) for row in rows)
        digests[table] = {"rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return digests


@pytest.fixture
def sequence_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "landing"
    root.mkdir()
    yield root


def test_the_load_sequence_leaves_the_recorded_warehouse(
    warehouse: Warehouse, sequence_root: Path
) -> None:
    load_sequence(warehouse, sequence_root)
    recorded = json.loads(DIGESTS.read_text(encoding="utf-8"))
    assert warehouse_digests(warehouse, sequence_root) == recorded
    # The digests would prove little if the sequence left out what a load must get right.
    statuses = dict(warehouse.fetch("SELECT status, count(*) FROM batches GROUP BY status"))
    assert statuses.get("loaded", 0) > 40 and statuses.get("failed", 0) > 0
    reasons = {
        row[0] for row in warehouse.fetch("SELECT DISTINCT unnest(reasons) FROM sales_rejected")
    }
    assert {"duplicate_in_warehouse", "duplicate", "bad_encoding", "ragged_row"} <= reasons


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "landing"
        root.mkdir()
        store = DuckDBWarehouse(Path(scratch) / "warehouse.duckdb")
        load_sequence(store, root)
        DIGESTS.write_text(json.dumps(warehouse_digests(store, root), indent=2) + "\n")
    sys.stdout.write(f"wrote {DIGESTS}\n")
