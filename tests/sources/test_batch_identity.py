"""A batch is its source: the path below the landing root, never the bare file name."""

from __future__ import annotations

from pathlib import Path

from salesflow.manifest import staging_name
from salesflow.sources.files import batch_identity, discover_sources


def write(path: Path, text: str = "order_id\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_same_file_name_in_two_folders_is_two_sources_with_two_batch_ids(tmp_path: Path) -> None:
    north = write(tmp_path / "north" / "sales.csv")
    south = write(tmp_path / "south" / "sales.csv")

    found = discover_sources([north, tmp_path / "south"])

    assert found == [north, south]
    assert [batch_identity(path, tmp_path) for path in found] == [
        "north/sales.csv",
        "south/sales.csv",
    ]


def test_a_file_directly_in_the_landing_root_is_known_by_its_name(tmp_path: Path) -> None:
    day = write(tmp_path / "sales_2024-01-01.csv")

    assert batch_identity(day, tmp_path) == "sales_2024-01-01.csv"


def test_a_file_outside_the_landing_root_is_known_by_its_absolute_path(tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere" / "sales.csv")

    assert batch_identity(outside, tmp_path / "landing") == f"{tmp_path}/elsewhere/sales.csv"
    assert batch_identity(outside, None) == f"{tmp_path}/elsewhere/sales.csv"


def test_relative_and_dotted_paths_give_the_same_identity(tmp_path: Path) -> None:
    day = write(tmp_path / "landing" / "eu" / "sales.csv")
    dotted = tmp_path / "landing" / "x" / ".." / "eu" / "sales.csv"

    assert batch_identity(dotted, tmp_path / "landing") == "eu/sales.csv"
    assert batch_identity(day, tmp_path / "landing" / ".") == "eu/sales.csv"


def test_staging_folder_names_are_safe_and_distinct_for_distinct_batches() -> None:
    names = {
        staging_name(batch_id)
        for batch_id in ("a/sales.csv", "b/sales.csv", "/abs/sales.csv", "sales.csv")
    }
    hostile = staging_name("../../etc/x\n\x1b[31m*?[a].csv")

    assert len(names) == 4
    assert all("/" not in name for name in names)
    assert "/" not in hostile and ".." not in hostile
    assert hostile.isprintable() and not set("*?[]\n\x1b") & set(hostile)
