"""Row types of warehouse tables that other packages build and the warehouse stores.

They live below both `salesflow.anomalies` (which finds anomalies) and the warehouse backends
(which write them), so neither has to import the other.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel


class Anomaly(BaseModel):
    """One KPI of one region on one day that lies beyond the threshold: a row of `anomalies`."""

    order_date: date
    region: str
    kpi: str
    value: float
    median: float
    mad: float
    robust_z: float
    direction: Literal["spike", "drop"]
    window_days: int
    detected_at: datetime
    flow_run_id: str | None = None
