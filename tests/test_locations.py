"""Warehouse locations: a URL of an unknown scheme is refused, naming the setting, instead of
becoming a DuckDB file of that name; a run writes nothing under ./data when told elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesflow.cli import app
from salesflow.config import load_settings
from salesflow.errors import UsageError
from salesflow.warehouse import DuckDBWarehouse, open_warehouse, warehouse_kind
from tests.conftest import CANONICAL_HEADER, fresh_process_env, run_salesflow, write_csv

MISSPELLED = "postgresq://postgres@127.0.0.1:5432/postgres"
EXPECTED = "expected postgresql://..., postgres://..., or a DuckDB file path"


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgres"),
        ("POSTGRES://u@h/db?schema=wh", "postgres"),
        ("data/warehouse.duckdb", "duckdb"),
        ("/srv/wh.duckdb", "duckdb"),
        ("C:\\data\\wh.duckdb", "duckdb"),  # a drive letter is not a scheme
        ("C:/data/wh.duckdb", "duckdb"),
        ("backup:2024.duckdb", "duckdb"),  # a colon in a plain file name
        ("./md:wh.duckdb", "duckdb"),  # ./ makes any name a path
        ("wh.duckdb", "duckdb"),
    ],
)
def test_warehouse_kind_tells_urls_from_paths(location: str, kind: str) -> None:
    assert warehouse_kind(location) == kind


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        (MISSPELLED, "unknown URL scheme 'postgresq'"),
        ("mysql://root@localhost/shop", "unknown URL scheme 'mysql'"),
        ("http://example.com/wh.duckdb", "unknown URL scheme 'http'"),
        ("s3://bucket/wh.duckdb", "unknown URL scheme 's3'"),
        ("md:my_db", "unknown URL scheme 'md'"),  # MotherDuck, no // needed
        ("sqlite:wh.db", "unknown URL scheme 'sqlite'"),
        ("pgsql:/db", "unknown URL scheme 'pgsql'"),  # word:/ is no useful path
        ("postgresql:/postgres", "malformed PostgreSQL URL"),
        ("postgres:postgres@localhost/db", "malformed PostgreSQL URL"),
    ],
)
def test_an_unknown_or_malformed_url_is_a_usage_error_listing_the_accepted_forms(
    location: str, problem: str
) -> None:
    with pytest.raises(UsageError) as raised:
        warehouse_kind(location)

    assert str(raised.value) == f"warehouse '{location}': {problem}; {EXPECTED}"
    assert raised.value.exit_code == 2


def test_the_message_escapes_control_characters_of_the_location() -> None:
    with pytest.raises(UsageError) as raised:
        warehouse_kind("pg://\x1b[31mhost/db")

    assert str(raised.value).startswith("warehouse 'pg://\\x1b[31mhost/db': unknown URL scheme")


def test_open_warehouse_refuses_a_misspelled_url_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown URL scheme 'postgresq'"):
        open_warehouse(MISSPELLED)

    assert list(tmp_path.iterdir()) == []  # the tests run in tmp_path: no ./postgresq: folder


def test_a_path_that_only_looks_like_a_url_after_path_normalising_stays_a_file(
    tmp_path: Path,
) -> None:
    settings = load_settings(warehouse="./md:wh.duckdb")

    assert settings.warehouse_location == "./md:wh.duckdb"  # Path would drop the "./"
    assert isinstance(open_warehouse(settings.warehouse_location), DuckDBWarehouse)
    assert load_settings(data_dir=Path("md:data")).warehouse_location == (
        "./md:data/warehouse.duckdb"
    )


BAD_SETTING = (
    f"bad configuration: warehouse: Value error, '{MISSPELLED}': unknown URL scheme "
    f"'postgresq'; {EXPECTED}"
)


def test_a_misspelled_warehouse_variable_fails_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFLOW_WAREHOUSE", MISSPELLED)

    with pytest.raises(UsageError) as raised:
        load_settings()

    assert str(raised.value) == BAD_SETTING


def test_a_misspelled_warehouse_in_salesflow_toml_fails_naming_the_setting(
    tmp_path: Path,
) -> None:
    (tmp_path / "salesflow.toml").write_text(f'warehouse = "{MISSPELLED}"\n', encoding="utf-8")

    with pytest.raises(UsageError) as raised:
        load_settings()

    assert str(raised.value) == BAD_SETTING


@pytest.mark.parametrize("command", ["run", "query", "rejects", "status", "validate"])
def test_warehouse_option_with_a_misspelled_url_exits_2_in_one_line(
    command: str, tmp_path: Path
) -> None:
    (tmp_path / "day.csv").write_text(CANONICAL_HEADER + "\n", encoding="utf-8")
    args = {"run": ["day.csv"], "validate": ["day.csv"], "query": ["SELECT 1"]}.get(command, [])

    result = CliRunner().invoke(app, [command, *args, "--warehouse", MISSPELLED])

    assert result.exit_code == 2
    assert result.stderr == f"error: {BAD_SETTING}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.csv"]


@pytest.mark.e2e
def test_run_creates_no_data_folder_when_warehouse_and_data_dir_are_elsewhere(
    tmp_path: Path,
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    elsewhere = tmp_path / "elsewhere"
    day = write_csv(
        tmp_path / "landing" / "day.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
    )
    env = fresh_process_env(tmp_path / "prefect-home")
    env["SALESFLOW_DATA_DIR"] = str(elsewhere / "data")

    result = run_salesflow(here, env, "run", str(day), "--warehouse", str(elsewhere / "wh.duckdb"))

    assert result.returncode == 0, result.stderr
    assert "1 loaded" in result.stdout
    assert list(here.iterdir()) == []  # no ./data, nor anything else, in the working folder
    assert (elsewhere / "wh.duckdb").is_file()
    assert sorted(p.name for p in (elsewhere / "data").iterdir()) == ["results", "staging"]
