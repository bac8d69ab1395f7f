"""Source profiles: how a known export's columns map onto the contract, and the rules it needs.

A profile is data, not code: an explicit column map plus a few rule overrides (the
`SourceProfile` type, in `source_profile`). Built-in profiles live here; users add their own
under `[profiles.<name>]` in salesflow.toml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pydantic import ValidationError

from salesflow.errors import UsageError
from salesflow.source_profile import SourceProfile

if TYPE_CHECKING:
    from salesflow.config import Settings


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
