"""The dry run behind `salesflow validate`: real files checked, nothing written."""

from __future__ import annotations

from pathlib import Path

from salesflow.config import Settings
from salesflow.dry_run import FileCheck, dry_run
from tests.conftest import CANONICAL_HEADER, write_csv

GOOD = "o1,2024-01-01T10:00:00,c1,s1,Widget,tools,2,9.99,north"
ZERO_QUANTITY = "o2,2024-01-01T11:00:00,c1,s1,Widget,tools,0,9.99,north"


def test_a_clean_file_has_no_rejections_and_nothing_is_written(
    tmp_path: Path, settings: Settings
) -> None:
    source = write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, GOOD)

    (check,) = dry_run([source], settings)

    assert check.error is None
    assert check.manifest is not None
    assert (check.manifest.rows_in, check.manifest.rows_valid, check.manifest.rows_rejected) == (
        1,
        1,
        0,
    )
    assert not check.would_fail
    assert not Path(settings.warehouse_location).exists()


def test_rejected_rows_are_counted_by_reason_and_a_share_over_the_limit_would_fail(
    tmp_path: Path, settings: Settings
) -> None:
    source = write_csv(tmp_path / "in" / "a.csv", CANONICAL_HEADER, GOOD, ZERO_QUANTITY)

    (check,) = dry_run([source], settings.model_copy(update={"max_reject_share": 0.25}))

    assert check.manifest is not None
    assert check.manifest.rows_rejected == 1
    assert "zero_quantity" in check.manifest.reason_counts
    assert check.reject_share == 0.5
    assert check.would_fail


def test_an_unreadable_file_is_reported_and_the_others_still_checked(
    tmp_path: Path, settings: Settings
) -> None:
    bad = write_csv(tmp_path / "in" / "a.csv", "order_id,region", "o1,north")
    good = write_csv(tmp_path / "in" / "b.csv", CANONICAL_HEADER, GOOD)
    started: list[Path] = []
    finished: list[FileCheck] = []
    planned: list[int] = []

    checks = dry_run(
        [tmp_path / "in"],
        settings,
        planned=planned.append,
        starting=started.append,
        checked=finished.append,
    )

    assert [check.source.name for check in checks] == ["a.csv", "b.csv"]
    assert checks[0].error is not None and checks[0].manifest is None
    assert "unit_price" in checks[0].problem
    assert checks[1].error is None
    assert planned == [2]
    assert [path.name for path in started] == [bad.name, good.name]
    assert finished == checks
