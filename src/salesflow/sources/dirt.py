"""Dirt for generated days: the malformed rows a real landing file carries, one kind per row.

The clean day comes from `generator`; this only replaces values on chosen rows and inserts exact
copies, drawing from its own random stream so the clean rows do not depend on the dirt.
"""

from __future__ import annotations

import datetime
import math
from enum import IntEnum
from typing import Final

import numpy as np
import polars as pl

_PICKS: Final = 12  # variants of a dirty value are picked by a draw modulo 3 or 4: 12 keeps it fair


class Dirt(IntEnum):
    """The kinds of dirt a dirty day carries; each dirty row carries exactly one."""

    MISSING_ORDER_ID = 0
    MISSING_SKU = 1
    MISSING_ORDER_TS = 2
    MISSING_QUANTITY = 3
    MISSING_UNIT_PRICE = 4
    MISSING_REGION = 5
    BAD_TYPE_ORDER_TS = 6
    BAD_TYPE_QUANTITY = 7
    BAD_TYPE_UNIT_PRICE = 8
    ZERO_QUANTITY = 9
    NEGATIVE_PRICE = 10
    DUPLICATE = 11


def dirty_count(rows: int, dirty_ratio: float) -> int:
    """How many rows to dirty: about dirty_ratio * rows, and at least one per kind on real days."""
    n_dirty = math.floor(dirty_ratio * rows + 0.5)
    if dirty_ratio > 0 and rows >= 50:
        n_dirty = max(n_dirty, len(Dirt))
    return n_dirty


def _dirty_rows(lines: np.ndarray, n_dirty: int, rng: np.random.Generator) -> np.ndarray:
    """Which rows to dirty: one line in each of n_dirty random orders, so two dirty rows of one
    order (whose keys are blanked) cannot end up as accidental exact copies of each other.
    """
    n_orders = min(n_dirty, lines.size)
    orders = rng.choice(lines.size, n_orders, replace=False)
    starts = np.cumsum(lines) - lines
    rows = starts[orders] + (rng.random(n_orders) * lines[orders]).astype(np.int64)
    if n_orders < n_dirty:  # only on tiny days with few orders
        free = np.setdiff1d(np.arange(lines.sum()), rows)
        rows = np.concatenate([rows, rng.choice(free, n_dirty - n_orders, replace=False)])
    return rows


def add_dirt(
    frame: pl.DataFrame,
    day: datetime.date,
    lines: np.ndarray,
    n_dirty: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Replace values on n_dirty rows, one kind of dirt each, and insert the duplicate copies."""
    rows = _dirty_rows(lines, n_dirty, rng)
    kinds = np.concatenate(
        [
            np.arange(min(n_dirty, len(Dirt))),
            rng.integers(0, len(Dirt), max(n_dirty - len(Dirt), 0)),
        ]
    )
    kind = np.full(frame.height, -1, dtype=np.int8)
    kind[rows] = kinds
    dirty = (
        frame.with_columns(
            _kind=pl.Series(kind), _pick=pl.Series(rng.integers(0, _PICKS, frame.height))
        )
        .with_columns(_dirty_values(day))
        .drop("_kind", "_pick")
    )
    copies = np.sort(rows[kinds == Dirt.DUPLICATE])
    order = np.insert(np.arange(frame.height), copies + 1, copies)
    return dirty[order]


def _dirty_values(day: datetime.date) -> list[pl.Expr]:
    """Each column with its dirt applied where `_kind` says so; `_pick` varies the dirty value."""
    kind, pick = pl.col("_kind"), pl.col("_pick")
    ts, qty, price = pl.col("order_ts"), pl.col("quantity"), pl.col("unit_price")
    bad_ts = _choose(
        pick,
        pl.concat_str(pl.lit(f"{day:%d/%m/%Y} "), ts.str.slice(11, 5)),
        pl.lit(f"31/02/{day.year}"),
        pl.lit("yesterday"),
    )
    bad_qty = _choose(pick, pl.concat_str(qty, pl.lit(".5")), pl.lit("two"), qty + " pcs")
    bad_price = _choose(pick, price.str.replace(".", ",", literal=True), pl.lit("abc"), "$" + price)
    blank_region = _choose(pick, pl.lit(None), pl.lit(None), pl.lit(""), pl.lit("  "))
    return [
        _dirt(kind, "order_id", {Dirt.MISSING_ORDER_ID: pl.lit(None)}),
        _dirt(kind, "sku", {Dirt.MISSING_SKU: pl.lit(None)}),
        _dirt(kind, "product", {Dirt.MISSING_SKU: pl.lit(None)}),
        _dirt(
            kind, "order_ts", {Dirt.MISSING_ORDER_TS: pl.lit(None), Dirt.BAD_TYPE_ORDER_TS: bad_ts}
        ),
        _dirt(
            kind,
            "quantity",
            {
                Dirt.MISSING_QUANTITY: pl.lit(None),
                Dirt.BAD_TYPE_QUANTITY: bad_qty,
                Dirt.ZERO_QUANTITY: pl.lit("0"),
            },
        ),
        _dirt(
            kind,
            "unit_price",
            {
                Dirt.MISSING_UNIT_PRICE: pl.lit(None),
                Dirt.BAD_TYPE_UNIT_PRICE: bad_price,
                Dirt.NEGATIVE_PRICE: "-" + price,
            },
        ),
        _dirt(kind, "region", {Dirt.MISSING_REGION: blank_region}),
    ]


def _dirt(kind: pl.Expr, column: str, values: dict[Dirt, pl.Expr]) -> pl.Expr:
    """`column` with values[k] on the rows of dirt kind k, unchanged elsewhere."""
    expr: pl.Expr = pl.col(column)
    for dirt, value in values.items():
        expr = pl.when(kind == dirt.value).then(value.cast(pl.String)).otherwise(expr)
    return expr.alias(column)


def _choose(pick: pl.Expr, *options: pl.Expr) -> pl.Expr:
    """One of the options per row, by `pick` (a random integer column) modulo their number."""
    expr = options[-1]
    for i, option in enumerate(options[:-1]):
        expr = pl.when(pick % len(options) == i).then(option).otherwise(expr)
    return expr
