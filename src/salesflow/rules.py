"""The tunable rules of the contract, taken from settings and fixed for one run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from salesflow.config import Settings


@dataclass(frozen=True)
class ValidationRules:
    """The tunable parts of the contract, taken from settings.

    `not_after` is the latest accepted order_ts (naive, shop time, counted from the next whole
    hour); None disables the check.
    It is fixed by the caller, so validation stays a pure function of its inputs.
    """

    timezone: str = "UTC"
    max_quantity: int = 100_000
    max_unit_price: Decimal = Decimal(1_000_000)
    timestamp_format: str | None = None
    min_order_date: date = date(2000, 1, 1)
    not_after: datetime | None = None
    regions: frozenset[str] | None = None
    max_field_length: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, now: datetime | None = None) -> ValidationRules:
        """Rules for a run starting `now` (default: the current time)."""
        zone = ZoneInfo(settings.timezone)
        current = (now or datetime.now(UTC)).astimezone(zone).replace(tzinfo=None)
        # Up to the next whole hour: the rules, and so the cache keys of validated batches,
        # hold for an hour, and the check is never stricter than configured.
        hour = current.replace(minute=0, second=0, microsecond=0)
        current = hour if hour == current else hour + timedelta(hours=1)
        return cls(
            timezone=settings.timezone,
            max_quantity=settings.max_quantity,
            max_unit_price=settings.max_unit_price,
            timestamp_format=settings.timestamp_format,
            min_order_date=settings.min_order_date,
            not_after=current + timedelta(hours=settings.future_tolerance_hours),
            regions=frozenset(settings.regions) if settings.regions is not None else None,
            max_field_length=settings.max_field_length,
        )
