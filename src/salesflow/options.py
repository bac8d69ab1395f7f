"""What one run is asked to do beyond the settings, decided once before the run starts.

`RunOptions` is the one object the flows take besides their sources and settings (frozen, and
plain data, so Prefect can show it as a flow parameter and a deployment can pass it as JSON);
`apply_run_profile` is the one place a run's source profile is resolved and applied.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from salesflow.config import Settings
from salesflow.profiles import apply_profile, resolve_profile


class RunOptions(BaseModel):
    """How to run a load: every field's default is what a plain `salesflow run` does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warehouse: str | None = Field(
        None, description="Warehouse location to load into; default: the warehouse setting."
    )
    force: bool = Field(False, description="Load files even when their content is loaded.")
    verify: bool = Field(
        False,
        description="Hash every file, even one whose size and mtime match what was loaded.",
    )
    accept_rejects: bool = Field(
        False, description="Load a batch whatever share of its rows is rejected."
    )
    refresh_cache: bool = Field(False, description="Recompute cached stage results.")
    profile: str | None = Field(None, description="Source profile every file is read through.")
    report: Path | None = Field(None, description="Write the HTML report here after the run.")
    as_of: datetime | None = Field(
        None, description="Time future dates are judged against (default: now)."
    )
    landing_root: Path | None = Field(
        None, description="Folder batch ids are relative to (default: the landing_dir setting)."
    )

    @property
    def recheck(self) -> Recheck:
        """How this run's plans tell a loaded file: --force beats --verify."""
        if self.force:
            return Recheck.NEVER
        return Recheck.HASH if self.verify else Recheck.STAT

    def warehouse_location(self, settings: Settings) -> str:
        """The location this run loads into: the option when given, else the setting."""
        return self.warehouse or settings.warehouse_location

    def landing_root_of(self, settings: Settings) -> Path:
        """The folder batch ids are taken relative to."""
        return self.landing_root if self.landing_root is not None else settings.landing_dir


class Recheck(StrEnum):
    """How a plan tells whether a file is already loaded."""

    STAT = "stat"  # same size and mtime as when its loaded content was hashed, else the sha256
    HASH = "hash"  # always the sha256 (`--verify`)
    NEVER = "never"  # not at all: load it whatever is loaded (`--force`)


class ReadAs(NamedTuple):
    """A source profile as the stages read files through it: its name (part of cache keys and
    of every manifest) and its column map (source column -> canonical column)."""

    name: str
    columns: dict[str, str]


def apply_run_profile(settings: Settings, profile: str | None) -> tuple[Settings, ReadAs | None]:
    """The settings a run works with under `profile` (its rule overrides applied) and how its
    files are read; unchanged settings and None without a profile. An unknown profile or a bad
    override is a one-line UsageError."""
    if profile is None:
        return settings, None
    chosen = resolve_profile(settings, profile)
    return apply_profile(settings, chosen), ReadAs(profile, dict(chosen.columns))
