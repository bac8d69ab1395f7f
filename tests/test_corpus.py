"""The corpus of bad and odd input files: each one's exact outcome, through the real stages.

Every file of tests/data/corpus goes extract -> validate (and transform) -> load into a fresh DuckDB
warehouse (no Prefect): either it fails as a batch with the exact one-line problem, or exactly
the listed rows are quarantined with exactly their reasons, the rest are loaded, and the money
loaded is exact. tests/data/make_corpus.py writes the corpus; a test keeps the two in step.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesflow import errors, stages
from salesflow.config import load_settings
from salesflow.contract import CANONICAL_COLUMNS, Reason
from salesflow.errors import BatchError
from salesflow.manifest import BatchOutcome, BatchStatus
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from salesflow.warehouse import DuckDBWarehouse
from salesflow.warehouse.base import LoadPolicy

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "corpus"
GENERATOR = DATA / "make_corpus.py"
EXPECTATIONS = CORPUS / "expected.json"
NOT_INPUTS = {"expected.json", ".gitattributes"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


GENERATED = _load_generator()
EXPECTED: dict[str, dict[str, Any]] = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rules() -> ValidationRules:
    """The rules the corpus was written for: defaults, the corpus regions, a fixed now."""
    configured = load_settings(regions=list(GENERATED.REGIONS))
    return ValidationRules.from_settings(configured, now=GENERATED.NOW)


def run_batch(
    source: Path, warehouse: DuckDBWarehouse, staging: Path, rules: ValidationRules
) -> BatchOutcome:
    """One batch through the plain stages into the warehouse, accepting any share of rejects."""
    manifest = stages.extract(source, staging)
    manifest = stages.validate(manifest, rules, TicketBands())
    return warehouse.load_batch(manifest, None, LoadPolicy(accept_rejects=True))


def rejected_rows(warehouse: DuckDBWarehouse, batch_id: str) -> dict[str, list[str]]:
    rows = warehouse.fetch(
        "SELECT source_row, reasons FROM sales_rejected WHERE batch_id = ? ORDER BY source_row",
        [batch_id],
    )
    return {str(source_row): list(reasons) for source_row, reasons in rows}


# --- the corpus and its generator ------------------------------------------------------------


def test_corpus_has_at_least_40_files_each_with_an_expectation() -> None:
    inputs = {path.name for path in CORPUS.iterdir() if path.name not in NOT_INPUTS}

    assert len(inputs) >= 40
    assert inputs == set(EXPECTED), "every corpus file needs an expectation, and vice versa"
    for name, expected in EXPECTED.items():
        assert set(expected) in (
            {"error", "fails"},
            {"rows_in", "rejected", "amount"},
            {"after", "rows_in", "rejected", "amount"},
        ), name


def test_generator_reproduces_the_checked_in_corpus_byte_for_byte(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(GENERATOR), str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr

    generated = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    checked_in = {path.name: path.read_bytes() for path in CORPUS.iterdir()}
    assert sorted(generated) == sorted(checked_in)
    drifted = [name for name in generated if generated[name] != checked_in[name]]
    assert not drifted, f"run `python {GENERATOR.relative_to(DATA.parent.parent)}` and commit"


def test_generator_is_idempotent(tmp_path: Path) -> None:
    first = {path.name: path.read_bytes() for path in GENERATED.write_corpus(tmp_path / "a")}
    again = {path.name: path.read_bytes() for path in GENERATED.write_corpus(tmp_path / "a")}

    assert first == again


def test_corpus_covers_every_reason_code_and_every_format() -> None:
    reasons = {
        reason
        for expected in EXPECTED.values()
        for row_reasons in expected.get("rejected", {}).values()
        for reason in row_reasons
    }
    suffixes = {"".join(Path(name).suffixes[-2:]) for name in EXPECTED}

    assert reasons == {str(reason) for reason in Reason}
    assert {".csv", ".csv.gz", ".parquet", ".jsonl"} <= suffixes
    assert any(
        len(reasons) >= 5 for e in EXPECTED.values() for reasons in e.get("rejected", {}).values()
    )


# --- each file's outcome ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_has_its_expected_outcome(
    name: str, tmp_path: Path, rules: ValidationRules
) -> None:
    expected = EXPECTED[name]
    source = CORPUS / name
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    staging = tmp_path / "staging"
    if "after" in expected:
        run_batch(CORPUS / expected["after"], warehouse, staging, rules)

    if "fails" in expected:
        with pytest.raises(BatchError) as caught:
            run_batch(source, warehouse, staging, rules)
        error = caught.value
        assert type(error) is getattr(errors, expected["error"])
        assert error.problem == expected["fails"]
        assert error.source == str(source)
        assert str(error) == f"{source}: {expected['fails']}"
        assert "\n" not in str(error)
        if "after" not in expected:
            assert not warehouse.path.exists(), "a failed batch never reaches the warehouse"
        return

    outcome = run_batch(source, warehouse, staging, rules)

    rejected = rejected_rows(warehouse, name)
    loaded, amount = warehouse.fetch(
        "SELECT count(*), coalesce(sum(total), 0) FROM sales WHERE batch_id = ?", [name]
    )[0]
    assert outcome.rows_in == expected["rows_in"]
    assert rejected == expected["rejected"]
    assert amount == Decimal(expected["amount"])
    assert loaded + len(rejected) == expected["rows_in"]
    loaded_rows = warehouse.fetch(
        "SELECT source_row FROM sales WHERE batch_id = ? ORDER BY source_row", [name]
    )
    all_rows = {str(n) for n in range(1, expected["rows_in"] + 1)}
    assert {str(row[0]) for row in loaded_rows} == all_rows - set(rejected)
    assert (outcome.status, outcome.rows_loaded, outcome.rows_rejected) == (
        BatchStatus.LOADED,
        loaded,
        len(rejected),
    )
    assert outcome.amount_loaded == Decimal(expected["amount"])
    recorded = warehouse.fetch(
        "SELECT status, rows_in, rows_loaded, rows_rejected, amount_loaded FROM batches "
        "WHERE batch_id = ?",
        [name],
    )
    assert recorded == [
        ("loaded", expected["rows_in"], loaded, len(rejected), Decimal(expected["amount"]))
    ]


# --- arbitrary dirty batches -----------------------------------------------------------------

DIRTY_TEXT = st.text(alphabet=st.sampled_from(list("aZ09 .,-+;\"'\t\n\r/:eé€")), max_size=8)
BLANKS = st.sampled_from(["", " ", "  ", "\t", " \t "])
NUMBERS = st.sampled_from(
    [
        *("1", "2", "-1", "-3", "0", "007", "+4", " 5 ", "3.0", "-2.00", "100000", "-100000"),
        *("2.5", "1e3", "12,50", "two", "1,000", "100001", "-100001", "99999999999999999999"),
    ]
)
PRICES = st.sampled_from(
    [
        *("10.50", "0.3333", "99.99", "0", "1", "+7.25", " 12.5 ", "-0.00", "1000000"),
        *("-1", "12,50", "1e3", "1.23456", ".5", "5.", "NaN", "1000000.0001"),
    ]
)
DATES = st.sampled_from(
    [
        *("2024-05-10", "2024-05-10T10:00:00", "2024-05-10 18:45", "2024-05-10T10:00:00Z"),
        *("2024-05-10T10:00:00+02:00", "2024-06-02T12:00:00", "2000-01-01"),
        *("2024-02-30", "05/10/2024", "1999-12-31", "2030-01-01", "2024-06-02T12:00:01"),
        "yesterday",
    ]
)
TEXTS = st.sampled_from(["A1", "A2", "SKU-1", "Widget", "North", "South", "Atlantis", "x"])
COLUMN_VALUES = {
    "order_id": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
    "order_ts": st.one_of(DATES, BLANKS, DIRTY_TEXT),
    "customer_id": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
    "sku": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
    "product": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
    "category": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
    "quantity": st.one_of(NUMBERS, BLANKS, DIRTY_TEXT),
    "unit_price": st.one_of(PRICES, BLANKS, DIRTY_TEXT),
    "region": st.one_of(TEXTS, BLANKS, DIRTY_TEXT),
}
RECORDS = st.tuples(*(COLUMN_VALUES[column] for column in CANONICAL_COLUMNS))


@st.composite
def dirty_batches(draw: st.DrawFn) -> list[tuple[str, ...]]:
    """Up to 12 records of dirty text, some of them repeated exactly."""
    records = draw(st.lists(RECORDS, min_size=1, max_size=8))
    copies = draw(st.lists(st.integers(0, len(records) - 1), max_size=4))
    for index in copies:
        position = draw(st.integers(0, len(records)))
        records.insert(position, records[index])
    return records


def write_batch(path: Path, records: list[tuple[str, ...]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CANONICAL_COLUMNS)
    writer.writerows(records)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(dirty_batches())
def test_every_record_is_loaded_or_rejected_once_and_money_reconciles(
    records: list[tuple[str, ...]],
) -> None:
    rules = ValidationRules.from_settings(load_settings(), now=GENERATED.NOW)
    with tempfile.TemporaryDirectory(prefix="salesflow-property-") as scratch:
        root = Path(scratch)
        source = write_batch(root / "dirty.csv", records)
        warehouse = DuckDBWarehouse(root / "w.duckdb")

        outcome = run_batch(source, warehouse, root / "staging", rules)

        loaded = warehouse.fetch(
            "SELECT source_row, quantity, unit_price, total FROM sales ORDER BY source_row"
        )
        rejected = warehouse.fetch("SELECT source_row, reasons FROM sales_rejected")

    rows_out = sorted([row[0] for row in loaded] + [row[0] for row in rejected])
    assert outcome.rows_in == len(records)
    assert rows_out == list(range(1, len(records) + 1)), "each record ends in exactly one table"
    assert all(reasons for _, reasons in rejected)

    quantity_at = CANONICAL_COLUMNS.index("quantity")
    price_at = CANONICAL_COLUMNS.index("unit_price")
    expected_money = Decimal(0)
    for source_row, quantity, unit_price, total in loaded:
        raw = records[source_row - 1]
        raw_quantity = Decimal(raw[quantity_at].strip())  # "3.0" is the whole number 3
        raw_price = Decimal(raw[price_at].strip())
        assert raw_quantity == raw_quantity.to_integral_value()
        assert (quantity, unit_price, total) == (raw_quantity, raw_price, raw_quantity * raw_price)
        expected_money += raw_quantity * raw_price
    assert outcome.amount_loaded == expected_money
    assert sum((row[3] for row in loaded), Decimal(0)) == expected_money
