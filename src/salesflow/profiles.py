"""Source profiles: how a known export's columns map onto the contract, and the rules it needs.

A profile is data, not code: an explicit column map plus a few rule overrides. Built-in profiles
live here; users add their own under `[profiles.<name>]` in salesflow.toml.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from salesflow.contract import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    check_timestamp_format,
    check_timezone,
)
from salesflow.errors import UsageError

if TYPE_CHECKING:
    from salesflow.config import Settings


class SourceProfile(BaseModel):
    """One kind of source file: its columns (source name -> canonical) and rule overrides.

    Source columns are matched like headers (trimmed, case-insensitive); columns of the file
    that the map does not name are ignored. An override left unset keeps the setting in force.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str] = Field(description="Source column -> canonical column.")
    timezone: str | None = None
    timestamp_format: str | None = None
    min_order_date: date | None = None
    max_quantity: int | None = Field(None, gt=0)
    max_unit_price: Decimal | None = Field(None, gt=0)
    max_reject_share: float | None = Field(None, ge=0, le=1)

    @field_validator("columns")
    @classmethod
    def _canonical_targets(cls, columns: dict[str, str]) -> dict[str, str]:
        """Every target is a contract column, given once, and the required ones are all there,
        so a bad profile fails at configuration time rather than on every file."""
        unknown = sorted({target for target in columns.values()} - set(CANONICAL_COLUMNS))
        if unknown:
            raise ValueError(
                f"unknown canonical column(s) {', '.join(unknown)} "
                f"(expected: {', '.join(CANONICAL_COLUMNS)})"
            )
        targets = list(columns.values())
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise ValueError(f"more than one source column gives {', '.join(repeated)}")
        sources = [name.strip().lower() for name in columns]
        if len(set(sources)) != len(sources):
            raise ValueError("a source column is listed twice (names match case-insensitively)")
        missing = [column for column in REQUIRED_COLUMNS if column not in targets]
        if "sku" not in targets and "product" not in targets:
            missing.append("sku")
        if missing:
            raise ValueError(f"no source column gives {', '.join(missing)}")
        return columns

    @model_validator(mode="after")
    def _usable_rules(self) -> SourceProfile:
        if self.timezone is not None:
            check_timezone(self.timezone)
        if self.timestamp_format is not None:
            check_timestamp_format(self.timestamp_format)
        return self

    def overrides(self) -> dict[str, Any]:
        """The settings this profile changes."""
        return self.model_dump(exclude={"columns"}, exclude_none=True)


# The UCI "Online Retail" export (InvoiceNo, StockCode, ...): a UK shop, so its naive
# timestamps are London time. Its dates are ISO (`2010-12-01 08:26:00`), so no timestamp_format.
ONLINE_RETAIL: Final = SourceProfile(
    columns={
        "InvoiceNo": "order_id",
        "StockCode": "sku",
        "Description": "product",
        "Quantity": "quantity",
        "InvoiceDate": "order_ts",
        "UnitPrice": "unit_price",
        "CustomerID": "customer_id",
        "Country": "region",
    },
    timezone="Europe/London",
)

BUILT_IN_PROFILES: Final[dict[str, SourceProfile]] = {"online-retail": ONLINE_RETAIL}


def known_profiles(settings: Settings) -> dict[str, SourceProfile]:
    """Built-in profiles and the configured ones; a configured profile replaces a built-in one
    of the same name."""
    return {**BUILT_IN_PROFILES, **settings.profiles}


def resolve_profile(settings: Settings, name: str) -> SourceProfile:
    """The profile called `name`, or a one-line UsageError listing the known ones."""
    profiles = known_profiles(settings)
    if name not in profiles:
        raise UsageError(
            f"unknown profile {name!r} (known: {', '.join(sorted(profiles))}); "
            "define it under [profiles.<name>] in salesflow.toml"
        )
    return profiles[name]


def apply_profile(settings: Settings, profile: SourceProfile) -> Settings:
    """Settings with the profile's rule overrides in force, checked together with the rest
    (an override may break a bound that spans two settings)."""
    try:
        return type(settings).model_validate({**settings.model_dump(), **profile.overrides()})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise UsageError(f"profile overrides: {where}: {first['msg']}") from None
