"""The `SourceProfile` type: a known export's column map and rule overrides, as data.

It sits below both `config` (settings hold user-defined profiles) and `profiles` (the built-in
ones and their resolution against settings), so neither imports the other for it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from salesflow.contract import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    check_timestamp_format,
    check_timezone,
)


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
