"""Settings: one object built from defaults, `salesflow.toml` and `SALESFLOW_*` variables.

The CLI builds it once and passes it down; nothing below reads the environment on its own.
Precedence, highest first: explicit arguments, environment variables, the TOML file, defaults.
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from salesflow.contract import check_timestamp_format, check_timezone
from salesflow.errors import UsageError
from salesflow.pg_url import secret_parameters
from salesflow.source_profile import SourceProfile
from salesflow.warehouse import warehouse_kind

CONFIG_FILE_ENV = "SALESFLOW_CONFIG"
MAX_TOTAL = 10**14  # DECIMAL(18,4) holds 14 integer digits
DEFAULT_CONFIG_FILE = "salesflow.toml"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class TaskRunner(StrEnum):
    """Where a run's batch stages execute: a thread pool in this process, or a Dask cluster."""

    threads = "threads"
    dask = "dask"


class Settings(BaseSettings):
    """Everything a run can be told; each field is listed in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SALESFLOW_", extra="forbid")

    data_dir: Path = Field(Path("data"), description="Where the warehouse and staging live.")
    warehouse: str | None = Field(
        None,
        description="The warehouse: a DuckDB file (default <data_dir>/warehouse.duckdb) or a "
        "postgresql:// URL.",
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
    timestamp_format: str | None = Field(
        None,
        description="Extra strptime format accepted for order_ts besides ISO 8601, "
        "e.g. '%d/%m/%Y %H:%M'.",
    )
    min_order_date: date = Field(date(2000, 1, 1), description="Earliest accepted order date.")
    future_tolerance_hours: float = Field(
        24, ge=0, description="How far past now an order_ts may lie (clock skew, time zones)."
    )
    regions: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Accepted regions; unset accepts any. Env: North,South or a JSON list."
    )
    max_field_length: int = Field(1000, gt=0, description="Longest accepted field, in characters.")
    reject_duplicates_in_warehouse: bool = Field(
        True, description="Reject rows identical to a row already loaded from another batch."
    )
    max_reject_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A batch rejecting a larger share of its rows fails whole (--accept-rejects).",
    )
    max_workers: int = Field(
        default_factory=_default_workers, gt=0, description="Batches processed at once."
    )
    max_days_in_flight: int = Field(2, gt=0, description="Days a backfill runs at once.")
    task_runner: TaskRunner = Field(
        TaskRunner.threads,
        description="Where batch stages run: a thread pool here, or a Dask cluster.",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler of an existing Dask cluster (tcp://host:8786); unset = a local "
        "cluster of max_workers processes.",
    )
    split_rows: int = Field(
        0,
        ge=0,
        description="Batches with more rows are validated and transformed per region, in "
        "parallel tasks; 0 never splits.",
    )
    warehouse_concurrency_limit: str | None = Field(
        None,
        description="Prefect global concurrency limit every warehouse write holds, for flow "
        "runs of several machines on one server; unset = none (the file lock suffices).",
    )
    result_storage: str | None = Field(
        None,
        description="Where stage results (small manifests) are kept: a folder or any fsspec "
        "URL; default <data_dir>/results.",
    )
    cache_hours: float = Field(
        168, gt=0, description="How long cached stage results and staged files are reused."
    )
    retries: int = Field(
        3, ge=0, description="Retries of extract-validate and load on transient errors."
    )
    task_timeout_seconds: float = Field(
        3600, gt=0, description="Time limit of extract-validate (and a split batch's tasks)."
    )
    load_timeout_seconds: float = Field(
        1800, gt=0, description="Time limit of one batch's load; the database interrupts it."
    )
    retry_delay_seconds: float = Field(
        1.0, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    demo_dir: Path = Field(Path("salesflow-demo"), description="Where `salesflow demo` works.")
    landing_dir: Path = Field(
        Path("landing"), description="Folder of daily files that `salesflow backfill` reads."
    )
    # Secrets are SecretStr: the whole Settings object is a flow parameter, so a plain string
    # would reach Prefect's database, UI and logs; a SecretStr shows as '**********' there.
    prefect_db_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL of the Prefect server `salesflow server up` starts; "
        "default SQLite in Prefect's home.",
    )
    webhook_url: SecretStr | None = Field(
        None, description="Webhook (Slack-compatible) that flow runs are reported to."
    )
    notify_on: Literal["failure", "always"] = Field(
        "failure", description="Which runs are reported to webhook_url: failures or all."
    )
    daily_cron: str = Field(
        "0 6 * * *", description="When salesflow-daily loads yesterday's files (cron, timezone)."
    )
    poll_interval_minutes: int = Field(
        15, gt=0, le=1440, description="How often salesflow-poll loads new landing files."
    )
    quality_rrule: str = Field(
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=0",
        description="When salesflow-quality-report publishes its artifact (RRule, timezone).",
    )
    profiles: dict[str, SourceProfile] = Field(
        default_factory=dict,
        description="Source profiles by name: a column map and rule overrides (`--profile`).",
    )
    oltp_url: str | None = Field(
        None,
        description="The shop's PostgreSQL database (postgresql://user@host/db?schema=shop) that "
        "`salesflow oltp` commands use.",
    )
    oltp_lag_minutes: float = Field(
        15,
        ge=0,
        description="How far before the watermark each oltp load looks again, for changes that "
        "committed late.",
    )
    anomaly_checks: bool = Field(
        True,
        description="After each load, compare the loaded days' KPIs per region with their "
        "trailing window; anomalies go to the `anomalies` table, the log, an artifact and events.",
    )
    anomaly_window_days: int = Field(
        28, gt=0, le=366, description="Days before a checked day that form its trailing window."
    )
    anomaly_min_history_days: int = Field(
        21,
        gt=0,
        description="Days with data the window needs before a day is checked at all.",
    )
    anomaly_z_threshold: float = Field(
        5.0,
        gt=0,
        description="A KPI is an anomaly when |robust z| = |value - median| / (1.4826 MAD) of "
        "its window exceeds this.",
    )
    work_pool: str = Field(
        "salesflow-process",
        min_length=1,
        description="Prefect process work pool that `salesflow deploy` registers against.",
    )

    @field_validator("regions", mode="before")
    @classmethod
    def _region_list(cls, value: Any) -> Any:
        """Accept `North,South`, a JSON list, or a TOML list; refuse an empty or non-text list."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith(("[", '"')) else text.split(",")
            value = [value] if isinstance(value, str) else value
        if isinstance(value, list):
            if not all(isinstance(region, str) for region in value):
                raise ValueError("must be a list of region names (text)")
            value = [region.strip() for region in value if region.strip()]
            if not value:
                raise ValueError("is empty; leave it unset to accept any region")
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _usable_format(cls, value: str | None) -> str | None:
        return None if value is None else check_timestamp_format(value)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _consistent_bounds(self) -> Settings:
        if not (0 <= self.ticket_low_max < self.ticket_medium_max < self.ticket_high_max):
            raise ValueError("ticket bounds must satisfy 0 <= low < medium < high")
        if self.max_quantity * self.max_unit_price >= MAX_TOTAL:
            raise ValueError(
                f"max_quantity x max_unit_price must stay below {MAX_TOTAL:,} "
                "so every total fits DECIMAL(18,4)"
            )
        if self.anomaly_min_history_days > self.anomaly_window_days:
            raise ValueError(
                "anomaly_min_history_days cannot exceed anomaly_window_days: no day would ever "
                "be checked"
            )
        return self

    @field_validator("warehouse", "oltp_url")
    @classmethod
    def _no_password_in_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Database URLs are part of every flow run's parameters, which Prefect stores and
        shows: a password must come from elsewhere."""
        if value and "://" in value and secret_parameters(value):
            what = "warehouse URL" if info.field_name == "warehouse" else "oltp_url"
            raise ValueError(
                f"keep the password out of the {what} (Prefect stores it with every run): "
                "use PGPASSWORD or ~/.pgpass"
            )
        return value

    @field_validator("warehouse")
    @classmethod
    def _known_location(cls, value: str | None) -> str | None:
        """A URL of an unknown scheme (`postgresq://...`) is refused here, naming the setting,
        rather than opened later as a DuckDB file of that name."""
        if value is None:
            return None
        try:
            warehouse_kind(value, name=None)
        except UsageError as error:
            raise ValueError(str(error)) from None
        return value

    @property
    def warehouse_location(self) -> str:
        """The warehouse as open_warehouse takes it: a URL (PostgreSQL) as given, else a path."""
        if self.warehouse and warehouse_kind(self.warehouse) == "postgres":
            return self.warehouse
        path = str(self.warehouse_path)
        try:
            warehouse_kind(path)
        except UsageError:  # `./md:wh.duckdb`: Path dropped the "./" that keeps it a file
            return os.path.join(os.curdir, path)
        return path

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
