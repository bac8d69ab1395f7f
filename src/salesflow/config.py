"""Settings: one object built from defaults, `salesflow.toml` and `SALESFLOW_*` variables.

The CLI builds it once and passes it down; nothing below reads the environment on its own.
Precedence, highest first: explicit arguments, environment variables, the TOML file, defaults.
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from salesflow.errors import UsageError

CONFIG_FILE_ENV = "SALESFLOW_CONFIG"
MAX_TOTAL = 10**14  # DECIMAL(18,4) holds 14 integer digits
DEFAULT_CONFIG_FILE = "salesflow.toml"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    """Everything a run can be told; each field is listed in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SALESFLOW_", extra="forbid")

    data_dir: Path = Field(Path("data"), description="Where the warehouse and staging live.")
    warehouse: str | None = Field(
        None, description="DuckDB file of the warehouse; default <data_dir>/warehouse.duckdb."
    )
    staging_dir: Path | None = Field(
        None, description="Scratch space for staged Parquet; default <data_dir>/staging."
    )
    timezone: str = Field(
        "UTC",
        description="Shop time zone: naive timestamps are read in it, offsets converted to it.",
    )
    ticket_low_max: Decimal = Field(Decimal(100), description="Upper bound of a `low` ticket.")
    ticket_medium_max: Decimal = Field(Decimal(500), description="Upper bound of `medium`.")
    ticket_high_max: Decimal = Field(Decimal(2000), description="Upper bound of `high`.")
    max_quantity: int = Field(100_000, gt=0, description="Largest accepted |quantity|.")
    max_unit_price: Decimal = Field(
        Decimal(1_000_000), gt=0, description="Largest accepted unit_price."
    )
    max_workers: int = Field(
        default_factory=_default_workers, gt=0, description="Batches processed at once."
    )
    retries: int = Field(3, ge=0, description="Retries of extract/load on transient errors.")
    retry_delay_seconds: float = Field(
        1.0, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    demo_dir: Path = Field(Path("salesflow-demo"), description="Where `salesflow demo` works.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
            # Polars does the conversions and knows fewer zones than the OS (no "Factory").
            pl.Series([datetime(2024, 1, 1)]).dt.replace_time_zone(value)
        except (ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _consistent_bounds(self) -> Settings:
        if not (0 <= self.ticket_low_max < self.ticket_medium_max < self.ticket_high_max):
            raise ValueError("ticket bounds must satisfy 0 <= low < medium < high")
        if self.max_quantity * self.max_unit_price >= MAX_TOTAL:
            raise ValueError(
                f"max_quantity x max_unit_price must stay below {MAX_TOTAL:,} "
                "so every total fits DECIMAL(18,4)"
            )
        return self

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse) if self.warehouse else self.data_dir / "warehouse.duckdb"

    @property
    def staging_path(self) -> Path:
        return self.staging_dir or self.data_dir / "staging"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning a bad value anywhere into one clear UsageError line."""
    toml_file = os.environ.get(CONFIG_FILE_ENV)
    if toml_file and not Path(toml_file).is_file():
        raise UsageError(f"{CONFIG_FILE_ENV}={toml_file}: no such configuration file")
    toml_file = toml_file or DEFAULT_CONFIG_FILE
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise UsageError(f"bad configuration: {where}: {first['msg']}") from None
    except ValueError as error:  # a malformed TOML file (tomllib.TOMLDecodeError)
        raise UsageError(f"{toml_file}: bad configuration file: {error}") from None
