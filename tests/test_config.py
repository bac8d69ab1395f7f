"""Tests of settings: defaults, salesflow.toml, SALESFLOW_* variables, precedence, bad values."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from salesflow.config import CONFIG_FILE_ENV, load_settings
from salesflow.errors import UsageError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SALESFLOW_* variables from the developer's shell, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("SALESFLOW_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_without_file_or_environment() -> None:
    settings = load_settings()

    assert settings.data_dir == Path("data")
    assert settings.warehouse_path == Path("data") / "warehouse.duckdb"
    assert settings.staging_path == Path("data") / "staging"
    assert settings.timezone == "UTC"
    assert (settings.ticket_low_max, settings.ticket_medium_max, settings.ticket_high_max) == (
        Decimal(100),
        Decimal(500),
        Decimal(2000),
    )
    assert settings.max_quantity == 100_000
    assert settings.max_unit_price == Decimal(1_000_000)
    assert settings.retries == 3
    assert settings.retry_delay_seconds == 1.0
    assert 1 <= settings.max_workers <= 4


def test_contract_rule_defaults() -> None:
    settings = load_settings()

    assert settings.timestamp_format is None
    assert settings.min_order_date == date(2000, 1, 1)
    assert settings.future_tolerance_hours == 24
    assert settings.regions is None
    assert settings.max_field_length == 1000
    assert settings.reject_duplicates_in_warehouse is True
    assert settings.max_reject_share == 0.05


def test_contract_rules_are_read_from_toml(clean_environment: Path) -> None:
    write_toml(
        clean_environment / "salesflow.toml",
        'timestamp_format = "%d/%m/%Y %H:%M"\n'
        "min_order_date = 2015-03-01\n"
        "future_tolerance_hours = 1.5\n"
        'regions = ["Norte", "Sur"]\n'
        "max_field_length = 200\n"
        "reject_duplicates_in_warehouse = false\n"
        "max_reject_share = 0.25\n",
    )

    settings = load_settings()

    assert settings.timestamp_format == "%d/%m/%Y %H:%M"
    assert settings.min_order_date == date(2015, 3, 1)
    assert settings.future_tolerance_hours == 1.5
    assert settings.regions == ["Norte", "Sur"]
    assert settings.max_field_length == 200
    assert settings.reject_duplicates_in_warehouse is False
    assert settings.max_reject_share == 0.25


def test_contract_rules_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFLOW_TIMESTAMP_FORMAT", "%d.%m.%Y")
    monkeypatch.setenv("SALESFLOW_MIN_ORDER_DATE", "2010-02-03")
    monkeypatch.setenv("SALESFLOW_FUTURE_TOLERANCE_HOURS", "0")
    monkeypatch.setenv("SALESFLOW_REGIONS", '["North", "South"]')
    monkeypatch.setenv("SALESFLOW_MAX_FIELD_LENGTH", "64")
    monkeypatch.setenv("SALESFLOW_REJECT_DUPLICATES_IN_WAREHOUSE", "false")
    monkeypatch.setenv("SALESFLOW_MAX_REJECT_SHARE", "1")

    settings = load_settings()

    assert settings.timestamp_format == "%d.%m.%Y"
    assert settings.min_order_date == date(2010, 2, 3)
    assert settings.future_tolerance_hours == 0
    assert settings.regions == ["North", "South"]
    assert settings.max_field_length == 64
    assert settings.reject_duplicates_in_warehouse is False
    assert settings.max_reject_share == 1.0


def test_an_empty_list_of_regions_is_refused_rather_than_rejecting_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFLOW_REGIONS", "[]")

    with pytest.raises(UsageError, match="regions: Value error, is empty"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "regions"),
    [
        ("North,South", ["North", "South"]),
        (" North , South ", ["North", "South"]),
        ('"North"', ["North"]),
    ],
)
def test_regions_from_the_environment_may_be_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, regions: list[str]
) -> None:
    monkeypatch.setenv("SALESFLOW_REGIONS", value)

    assert load_settings().regions == regions


def test_explicit_regions_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFLOW_REGIONS", '["North"]')

    assert load_settings(regions=["East", "West"]).regions == ["East", "West"]


def test_salesflow_toml_in_the_working_directory_is_read(clean_environment: Path) -> None:
    write_toml(
        clean_environment / "salesflow.toml",
        'timezone = "Europe/Madrid"\nmax_quantity = 50\nmax_unit_price = "99.5"\n'
        'data_dir = "lake"\n',
    )

    settings = load_settings()

    assert settings.timezone == "Europe/Madrid"
    assert settings.max_quantity == 50
    assert settings.max_unit_price == Decimal("99.5")
    assert settings.warehouse_path == Path("lake") / "warehouse.duckdb"


def test_salesflow_config_names_the_file_and_replaces_the_working_directory_one(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path, tmp_path: Path
) -> None:
    write_toml(clean_environment / "salesflow.toml", 'timezone = "Asia/Tokyo"\nretries = 9\n')
    chosen = write_toml(tmp_path / "elsewhere.toml", "max_quantity = 7\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(chosen))

    settings = load_settings()

    assert settings.max_quantity == 7
    assert settings.timezone == "UTC"
    assert settings.retries == 3


def test_salesflow_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFLOW_TIMEZONE", "America/New_York")
    monkeypatch.setenv("SALESFLOW_MAX_UNIT_PRICE", "12.5")
    monkeypatch.setenv("SALESFLOW_TICKET_LOW_MAX", "50")
    monkeypatch.setenv("SALESFLOW_RETRIES", "0")
    monkeypatch.setenv("SALESFLOW_WAREHOUSE", "/srv/sales.duckdb")

    settings = load_settings()

    assert settings.timezone == "America/New_York"
    assert settings.max_unit_price == Decimal("12.5")
    assert settings.ticket_low_max == Decimal(50)
    assert settings.retries == 0
    assert settings.warehouse_path == Path("/srv/sales.duckdb")


def test_environment_beats_toml(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    write_toml(clean_environment / "salesflow.toml", 'max_quantity = 60\ntimezone = "Asia/Tokyo"\n')
    monkeypatch.setenv("SALESFLOW_MAX_QUANTITY", "70")

    settings = load_settings()

    assert settings.max_quantity == 70
    assert settings.timezone == "Asia/Tokyo"


def test_explicit_argument_beats_environment_and_toml(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_toml(clean_environment / "salesflow.toml", "max_quantity = 60\nretries = 5\n")
    monkeypatch.setenv("SALESFLOW_MAX_QUANTITY", "70")
    monkeypatch.setenv("SALESFLOW_RETRIES", "6")

    settings = load_settings(max_quantity=80, retries=None)

    assert settings.max_quantity == 80
    assert settings.retries == 6  # None means "not given": the next source decides


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("SALESFLOW_MAX_QUANTITY", "lots", "max_quantity"),
        ("SALESFLOW_MAX_QUANTITY", "0", "max_quantity"),
        ("SALESFLOW_MAX_UNIT_PRICE", "12,5", "max_unit_price"),
        ("SALESFLOW_MAX_UNIT_PRICE", "-1", "max_unit_price"),
        ("SALESFLOW_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("SALESFLOW_RETRIES", "-1", "retries"),
        ("SALESFLOW_RETRY_DELAY_SECONDS", "soon", "retry_delay_seconds"),
        ("SALESFLOW_MAX_WORKERS", "0", "max_workers"),
        ("SALESFLOW_TICKET_LOW_MAX", "600", "ticket bounds"),
        ("SALESFLOW_REGIONS", "[1, 2]", "regions"),
        ("SALESFLOW_TIMESTAMP_FORMAT", "dd/mm/yyyy", "'dd/mm/yyyy' is not a strptime format"),
        ("SALESFLOW_MIN_ORDER_DATE", "yesterday", "min_order_date"),
        ("SALESFLOW_MIN_ORDER_DATE", "2024-02-30", "min_order_date"),
        ("SALESFLOW_FUTURE_TOLERANCE_HOURS", "-1", "future_tolerance_hours"),
        ("SALESFLOW_FUTURE_TOLERANCE_HOURS", "a day", "future_tolerance_hours"),
        ("SALESFLOW_MAX_FIELD_LENGTH", "0", "max_field_length"),
        ("SALESFLOW_REJECT_DUPLICATES_IN_WAREHOUSE", "maybe", "reject_duplicates_in_warehouse"),
        ("SALESFLOW_MAX_REJECT_SHARE", "1.5", "max_reject_share"),
        ("SALESFLOW_MAX_REJECT_SHARE", "-0.1", "max_reject_share"),
        ("SALESFLOW_MAX_REJECT_SHARE", "5%", "max_reject_share"),
    ],
)
def test_bad_environment_value_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(UsageError) as caught:
        load_settings()

    message = str(caught.value)
    assert message.startswith("bad configuration")
    assert complaint in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ("max_quantity = = 3\n", "bad configuration file"),
        ("max_quantity = 'lots'\n", "max_quantity"),
        ("max_qty = 3\n", "max_qty"),
        ("ticket_medium_max = 50\n", "ticket bounds"),
        ('timezone = "Nowhere/Land"\n', "unknown time zone"),
        ("regions = [1, 2]\n", "regions"),
        ('timestamp_format = "YYYY-MM-DD"\n', "not a strptime format"),
        ('min_order_date = "not a date"\n', "min_order_date"),
        ("max_field_length = -1\n", "max_field_length"),
    ],
)
def test_bad_toml_is_a_one_line_usage_error(
    clean_environment: Path, toml: str, complaint: str
) -> None:
    write_toml(clean_environment / "salesflow.toml", toml)

    with pytest.raises(UsageError) as caught:
        load_settings()

    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"max_quantity": -5}, "max_quantity"),
        ({"timezone": "utc+1"}, "unknown time zone"),
        ({"ticket_low_max": 500, "ticket_medium_max": 500}, "ticket bounds"),
        ({"ticket_low_max": -1}, "ticket bounds"),
        ({"no_such_setting": 1}, "no_such_setting"),
        ({"timestamp_format": "day-month-year"}, "not a strptime format"),
        ({"future_tolerance_hours": -0.5}, "future_tolerance_hours"),
        ({"max_reject_share": 2}, "max_reject_share"),
        ({"max_field_length": 0}, "max_field_length"),
    ],
)
def test_bad_explicit_value_is_a_one_line_usage_error(overrides: dict, complaint: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(**overrides)

    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_salesflow_config_pointing_at_a_missing_file_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))

    with pytest.raises(UsageError, match="no such configuration file") as caught:
        load_settings()

    assert str(missing) in str(caught.value)


def test_salesflow_config_pointing_at_a_directory_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path))

    with pytest.raises(UsageError, match="no such configuration file"):
        load_settings()


@pytest.mark.parametrize("zone", ["Factory", "localtime"])
def test_time_zone_the_pipeline_cannot_use_is_a_usage_error(zone: str) -> None:
    # ZoneInfo may know these names (files under /usr/share/zoneinfo), but polars, which converts
    # the timestamps, does not: validation would later crash with a ComputeError traceback.
    with pytest.raises(UsageError, match="time zone"):
        load_settings(timezone=zone)


def test_a_postgres_warehouse_url_is_kept_as_a_url_and_must_not_carry_a_password() -> None:
    url = "postgresql://etl@db.internal:5432/shop?schema=analytics"
    assert load_settings(warehouse=url).warehouse_location == url
    assert load_settings(warehouse="wh.duckdb").warehouse_location == str(Path("wh.duckdb"))

    with pytest.raises(UsageError, match="keep the password out of the warehouse URL") as caught:
        load_settings(warehouse="postgresql://etl:hunter2@db.internal/shop")
    assert "hunter2" not in str(caught.value)
