"""KPI anomaly checks: is a loaded day's revenue, order count, average order value or reject
rate strange next to the weeks before it?

Each checked day is compared with its trailing window (the `window_days` before it, not the day
itself) through a robust z-score, z = (value - median) / (1.4826 * MAD): median and MAD shrug off
the odd past spike that a mean and a standard deviation would chase. The KPI series are
aggregated in SQL through the warehouse interface, so DuckDB and PostgreSQL answer the same
query; the window statistics are one Polars join and group-by, no per-row Python.

A day with fewer than `min_history_days` days of history, or whose history does not vary at all
(MAD = 0, e.g. a reject rate that has always been 0), is not checked: without a spread there is no
scale to judge a deviation by, and a flat series would make any wiggle look infinitely strange.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from salesflow.warehouse.rows import Anomaly

if TYPE_CHECKING:
    from salesflow.config import Settings
    from salesflow.warehouse import Warehouse

Kpi = Literal["net_revenue", "orders", "avg_order_value", "reject_rate"]
KPIS: tuple[Kpi, ...] = ("net_revenue", "orders", "avg_order_value", "reject_rate")
ALL_REGIONS = "(all)"  # the region of the reject rate: a rejected row's region is not reliable
MAD_SCALE = 1.4826  # makes the MAD estimate the standard deviation of normal data

# Per region per day, for the order dates in a range. Distinct orders per region: an order
# belongs to one region. Parameters: first date, last date.
SALES_KPIS_SQL = (
    "SELECT order_date, region, CAST(sum(total) AS FLOAT8) AS net_revenue, "
    "count(DISTINCT order_id) AS orders FROM sales WHERE order_date BETWEEN ? AND ? "
    "GROUP BY order_date, region"
)

# The reject rate of the batches whose main order date (the date holding most of the batch's
# loaded rows; the earliest on a tie) is in a range: rejected / rows in, pooled over the batches
# of one date. Parameters: first date, last date, first date, last date.
REJECT_RATE_SQL = """
WITH touched AS (
    SELECT DISTINCT batch_id FROM sales WHERE order_date BETWEEN ? AND ?
), per_date AS (
    SELECT s.batch_id, s.order_date, count(*) AS n
    FROM sales s JOIN touched t ON t.batch_id = s.batch_id
    GROUP BY s.batch_id, s.order_date
), main_date AS (
    SELECT batch_id, order_date,
           row_number() OVER (PARTITION BY batch_id ORDER BY n DESC, order_date) AS pick
    FROM per_date
)
SELECT m.order_date, CAST(sum(b.rows_rejected) AS FLOAT8) / CAST(sum(b.rows_in) AS FLOAT8)
FROM main_date m JOIN batches b ON b.batch_id = m.batch_id
WHERE m.pick = 1 AND b.rows_in > 0 AND m.order_date BETWEEN ? AND ?
GROUP BY m.order_date
"""

# The order dates holding rows of the given batches. Parameter: the batch ids (a list).
LOADED_DATES_SQL = (
    "SELECT DISTINCT order_date FROM sales WHERE list_contains(?, batch_id) ORDER BY order_date"
)

SERIES_SCHEMA: dict[str, pl.DataType] = {
    "order_date": pl.Date(),
    "region": pl.String(),
    "kpi": pl.String(),
    "value": pl.Float64(),
}


@dataclass(frozen=True)
class AnomalyRules:
    """How strange is strange: the trailing window, the history it needs, the z threshold."""

    window_days: int = 28
    z_threshold: float = 5.0
    min_history_days: int = 21

    @classmethod
    def from_settings(cls, settings: Settings) -> AnomalyRules:
        return cls(
            window_days=settings.anomaly_window_days,
            z_threshold=settings.anomaly_z_threshold,
            min_history_days=settings.anomaly_min_history_days,
        )


def loaded_dates(warehouse: Warehouse, batch_ids: Sequence[str]) -> list[date]:
    """The order dates the given batches loaded rows for: what a run's check looks at."""
    if not batch_ids:
        return []
    return [row[0] for row in warehouse.fetch(LOADED_DATES_SQL, [list(batch_ids)])]


def kpi_series(warehouse: Warehouse, first: date, last: date) -> pl.DataFrame:
    """Every KPI per region per day between two dates (inclusive), long: order_date, region,
    kpi, value.

    A region seen in the range but with no sales on a day that has sales elsewhere counts 0
    revenue and 0 orders that day (a region going silent is the drop that matters most); its
    average order value is then undefined (null). Days without any sales are not days of
    history: nothing was loaded for them.
    """
    sales = pl.DataFrame(
        _sales_kpis(warehouse, first, last),
        schema={
            "order_date": pl.Date(),
            "region": pl.String(),
            "net_revenue": pl.Float64(),
            "orders": pl.Float64(),
        },
        orient="row",
    )
    grid = (
        sales.select("order_date")
        .unique()
        .join(sales.select("region").unique(), how="cross")
        .join(sales, on=["order_date", "region"], how="left")
        .with_columns(pl.col("net_revenue", "orders").fill_null(0.0))
        .with_columns(
            avg_order_value=pl.when(pl.col("orders") > 0).then(
                pl.col("net_revenue") / pl.col("orders")
            )
        )
    )
    per_region = grid.unpivot(
        index=["order_date", "region"],
        on=["net_revenue", "orders", "avg_order_value"],
        variable_name="kpi",
        value_name="value",
    )
    rejects = pl.DataFrame(
        warehouse.fetch(REJECT_RATE_SQL, [first, last, first, last]),
        schema={"order_date": pl.Date(), "value": pl.Float64()},
        orient="row",
    ).select(
        "order_date",
        region=pl.lit(ALL_REGIONS),
        kpi=pl.lit("reject_rate"),
        value="value",
    )
    columns = [pl.col(name).cast(dtype) for name, dtype in SERIES_SCHEMA.items()]
    return pl.concat([per_region.select(columns), rejects.select(columns)])


# Days of sales per KPI query. Counting distinct orders holds every order id of the range in
# memory: over a whole backfill of 100M rows that peaked at 6 GB, a week at a time stays flat.
KPI_QUERY_DAYS = 7


def _sales_kpis(warehouse: Warehouse, first: date, last: date) -> list[tuple[Any, ...]]:
    """SALES_KPIS_SQL over [first, last], a week of days per query (rows are per day, so the
    parts add up to the whole)."""
    rows: list[tuple[Any, ...]] = []
    start = first
    while start <= last:
        end = min(last, start + timedelta(days=KPI_QUERY_DAYS - 1))
        rows += warehouse.fetch(SALES_KPIS_SQL, [start, end])
        start = end + timedelta(days=1)
    return rows


def detect(series: pl.DataFrame, dates: Sequence[date], rules: AnomalyRules) -> pl.DataFrame:
    """The anomalous (order_date, region, kpi) of the checked `dates` in a long KPI series:
    value, median, mad, robust_z, direction, history_days.

    Each checked value is joined to the same series' values of the `window_days` before it;
    one group-by then gives each window's median and MAD.
    """
    values = series.drop_nulls("value")
    checked = values.filter(pl.col("order_date").is_in(list(dates)))
    history = values.select("region", "kpi", history_date="order_date", history_value="value")
    window = pl.duration(days=rules.window_days)
    windows = (
        checked.join(history, on=["region", "kpi"], how="inner")
        .filter(
            (pl.col("history_date") < pl.col("order_date"))
            & (pl.col("history_date") >= pl.col("order_date") - window)
        )
        .group_by("order_date", "region", "kpi")
        .agg(
            pl.col("value").first(),
            median=pl.col("history_value").median(),
            mad=(pl.col("history_value") - pl.col("history_value").median()).abs().median(),
            history_days=pl.len(),
        )
    )
    return (
        windows.filter((pl.col("history_days") >= rules.min_history_days) & (pl.col("mad") > 0))
        .with_columns(robust_z=(pl.col("value") - pl.col("median")) / (MAD_SCALE * pl.col("mad")))
        .filter(pl.col("robust_z").abs() > rules.z_threshold)
        .with_columns(
            direction=pl.when(pl.col("robust_z") > 0)
            .then(pl.lit("spike"))
            .otherwise(pl.lit("drop"))
        )
        .sort("order_date", "region", "kpi")
    )


def find_anomalies(
    warehouse: Warehouse,
    dates: Sequence[date],
    rules: AnomalyRules,
    flow_run_id: str | None = None,
    detected_at: datetime | None = None,
) -> list[Anomaly]:
    """The anomalies of the checked days, read from the warehouse (nothing is written)."""
    if not dates:
        return []
    first = min(dates) - timedelta(days=rules.window_days)
    found = detect(kpi_series(warehouse, first, max(dates)), dates, rules)
    when = detected_at or datetime.now(UTC)
    return [
        Anomaly(**row, window_days=rules.window_days, detected_at=when, flow_run_id=flow_run_id)
        for row in found.drop("history_days").to_dicts()
    ]


def check_days(
    warehouse: Warehouse,
    dates: Sequence[date],
    rules: AnomalyRules,
    flow_run_id: str | None = None,
) -> list[Anomaly]:
    """Check the days and store what was found: the days' earlier anomalies are replaced, so
    checking a day again leaves the same rows."""
    found = find_anomalies(warehouse, dates, rules, flow_run_id)
    if dates:
        warehouse.replace_anomalies(dates, found)
    return found


def describe(anomaly: Anomaly) -> str:
    """One log line: date, region, kpi, value, median, z."""
    return (
        f"anomaly date={anomaly.order_date} region={anomaly.region} kpi={anomaly.kpi} "
        f"value={anomaly.value:.6g} median={anomaly.median:.6g} z={anomaly.robust_z:+.1f} "
        f"({anomaly.direction})"
    )


def anomalies_markdown(found: Sequence[Anomaly], dates: Sequence[date]) -> str:
    """The `salesflow-anomalies` artifact: what was checked and every anomaly found."""
    checked = f"{len(dates)} day(s), {min(dates)} to {max(dates)}" if dates else "no days"
    lines = ["# KPI anomalies", "", f"Checked {checked}.", ""]
    if not found:
        return "\n".join([*lines, "No anomalies."])
    lines += [
        "| date | region | kpi | value | median | MAD | robust z | direction |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {a.order_date} | {a.region} | {a.kpi} | {a.value:,.6g} | {a.median:,.6g} | "
        f"{a.mad:,.6g} | {a.robust_z:+.1f} | {a.direction} |"
        for a in found
    ]
    return "\n".join(lines)
