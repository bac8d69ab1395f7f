"""Unchanged re-runs that do not rehash: a file whose size and mtime match what `batches`
recorded when its loaded content was hashed is skipped without reading it; `verify`, or any other
size or mtime, hashes it. On both warehouses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salesflow import stages
from salesflow.options import Recheck
from salesflow.warehouse.base import SCHEMA_VERSION, Warehouse
from tests.warehouse.batches import staged


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files plan hashes, in order (the real hash is still taken)."""
    seen: list[Path] = []
    real = stages.file_sha256

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(stages, "file_sha256", counting)
    return seen


def plan_again(warehouse: Warehouse, source: Path, verify: bool = False) -> stages.BatchManifest:
    recheck = Recheck.HASH if verify else Recheck.STAT
    return stages.plan(source, source.name, warehouse.source_index(), None, recheck)


def test_an_unchanged_file_is_skipped_without_reading_it(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    stat = day_file.stat()
    assert warehouse.fetch(
        "SELECT source_size, source_mtime_ns FROM batches WHERE batch_id = ?", [loaded.batch_id]
    ) == [(stat.st_size, stat.st_mtime_ns)]
    hashed.clear()

    again = plan_again(warehouse, day_file)

    assert again.skipped and again.duplicate_of is None
    assert again.sha256 == loaded.sha256
    assert hashed == []


def test_verify_hashes_an_unchanged_file_and_still_skips_it(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    hashed.clear()

    again = plan_again(warehouse, day_file, verify=True)

    assert again.skipped
    assert hashed == [day_file]


def test_a_touched_file_is_hashed_once_then_its_new_mtime_is_recorded(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    os.utime(day_file, ns=(day_file.stat().st_atime_ns, day_file.stat().st_mtime_ns + 10**9))
    hashed.clear()

    touched = plan_again(warehouse, day_file)
    assert touched.skipped and hashed == [day_file]  # same content: still nothing to load
    stages.load(touched, warehouse, "run-2")  # records the skip, with the new mtime

    assert plan_again(warehouse, day_file).skipped
    assert hashed == [day_file]  # not hashed a second time


def test_changed_content_is_found_by_size_or_by_verify(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    before = day_file.stat()
    text = day_file.read_text()

    day_file.write_text(text.replace("10.50", "10.75"))  # same size, new content
    os.utime(day_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime
    assert day_file.stat().st_size == before.st_size
    # Size and mtime are all the default looks at (the README says so): --verify finds it.
    assert plan_again(warehouse, day_file).skipped
    verified = plan_again(warehouse, day_file, verify=True)
    assert not verified.skipped and verified.sha256 != loaded.sha256

    day_file.write_text(text + "O9,2024-03-02T12:00:00,C9,S9,Pen,Office,1,1.00,South\n")
    hashed.clear()
    grown = plan_again(warehouse, day_file)
    assert not grown.skipped and hashed == [day_file]


def test_a_schema_2_warehouse_gains_the_columns_and_hashes_its_files_once(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    with warehouse.dialect.write_transaction() as con:  # type: ignore[attr-defined]
        for column in ("source_size", "source_mtime_ns"):
            con.execute(f"ALTER TABLE batches DROP COLUMN {column}")
        con.execute("UPDATE schema_version SET version = 2")

    warehouse.upgrade(None)

    assert warehouse.fetch("SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert warehouse.fetch("SELECT source_size, source_mtime_ns FROM batches") == [(None, None)]
    hashed.clear()
    first = plan_again(warehouse, day_file)
    assert first.skipped and hashed == [day_file]
    stages.load(first, warehouse, "run-2")
    assert plan_again(warehouse, day_file).skipped and hashed == [day_file]


def test_a_schema_2_warehouse_is_read_before_its_upgrade_and_its_files_hashed(
    warehouse: Warehouse, day_file: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    """`validate` and the scheduled flow's check read a warehouse without upgrading it."""
    loaded = warehouse.load_batch(staged(day_file, tmp_path / "stage"), "run-1")
    with warehouse.dialect.write_transaction() as con:  # type: ignore[attr-defined]
        for column in ("source_size", "source_mtime_ns"):
            con.execute(f"ALTER TABLE batches DROP COLUMN {column}")
        con.execute("UPDATE schema_version SET version = 2")
    hashed.clear()

    index = warehouse.source_index()
    again = stages.plan(day_file, day_file.name, index, None)

    assert index.stat_of_batch == {}
    assert again.skipped and again.sha256 == loaded.sha256
    assert hashed == [day_file]
