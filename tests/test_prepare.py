"""stages.prepare: stage and validate of a batch in one step, as extract-validate runs it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from salesflow import stages
from salesflow.manifest import BatchManifest
from salesflow.rules import ValidationRules
from salesflow.transform import TicketBands
from tests.conftest import CANONICAL_HEADER, write_csv

ROWS = [
    "o1,2024-03-01T10:00:00,c1,S1,Pen,Office,2,1.50,North",
    "o2,2024-03-01T11:00:00,c2,S2,Ink,Office,1,3.00,South",
    "o3,2024-03-01T12:00:00,c3,S3,Cup,Home,0,2.00,North",  # zero quantity: rejected
]


@pytest.fixture
def planned(tmp_path: Path) -> BatchManifest:
    source = write_csv(tmp_path / "in" / "day.csv", CANONICAL_HEADER, *ROWS)
    return stages.plan(source, source.name, None, None)


def test_prepare_gives_what_stage_then_validate_give(
    planned: BatchManifest, tmp_path: Path
) -> None:
    rules, bands = ValidationRules(), TicketBands()

    prepared, seconds = stages.prepare(planned, tmp_path / "one", rules, bands)
    apart = stages.validate(stages.stage(planned, tmp_path / "two"), rules, bands)

    assert (prepared.rows_in, prepared.rows_valid, prepared.rows_rejected) == (3, 2, 1)
    assert prepared.amount == apart.amount == 6
    assert prepared.reason_counts == apart.reason_counts == {"zero_quantity": 1}
    for path_of in ("sales_path", "rejected_path"):
        assert_frame_equal(
            pl.read_parquet(getattr(prepared, path_of)), pl.read_parquet(getattr(apart, path_of))
        )
    assert seconds.extract > 0 and seconds.validate > 0


def test_a_batch_over_split_rows_comes_back_staged_but_not_validated(
    planned: BatchManifest, tmp_path: Path
) -> None:
    prepared, seconds = stages.prepare(
        planned, tmp_path / "staging", ValidationRules(), split_rows=2
    )

    assert stages.needs_split(prepared, 2)
    assert prepared.raw_path.exists() and not prepared.sales_path.exists()
    assert (prepared.rows_in, prepared.rows_valid, prepared.rows_rejected) == (3, 0, 0)
    assert seconds.validate == 0


def test_split_rows_at_or_above_the_batch_or_unset_validates_it_whole(
    planned: BatchManifest, tmp_path: Path
) -> None:
    for split_rows in (0, 3, 10):
        prepared, _ = stages.prepare(
            planned, tmp_path / f"s{split_rows}", ValidationRules(), split_rows=split_rows
        )
        assert not stages.needs_split(prepared, split_rows)
        assert (prepared.rows_valid, prepared.rows_rejected) == (2, 1)


def test_a_skipped_batch_is_neither_staged_nor_validated(
    planned: BatchManifest, tmp_path: Path
) -> None:
    skipped = planned.model_copy(update={"skipped": True})

    prepared, _ = stages.prepare(skipped, tmp_path / "staging", ValidationRules())

    assert prepared == skipped
    assert not (tmp_path / "staging").exists()
