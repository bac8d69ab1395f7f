"""Seeded synthetic generator of daily e-commerce sales landing files, clean or deliberately dirty.

It gives tests, demos and benchmarks realistic input in every landing format without shipping data.
"""

from __future__ import annotations

import datetime
import functools
import gzip
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from salesflow.contract import CANONICAL_COLUMNS
from salesflow.errors import UsageError
from salesflow.sources.dirt import add_dirt, dirty_count


class FileFormat(StrEnum):
    """The formats the generator writes (and `salesflow generate --format` offers)."""

    csv = "csv"
    csv_gz = "csv.gz"
    parquet = "parquet"
    jsonl = "jsonl"


FORMATS: tuple[str, ...] = tuple(FileFormat)

MAX_DIRTY_RATIO: Final = 0.5

# The catalogue and the customer pool are fixed, whatever the seed, so customers and products recur
# across days and runs like in a real shop. Typical price per noun; the adjective scales it.
_CATALOGUE_SEED: Final = 20_240_101
# One category a paragraph, `Category: Noun typical-price, ...`, lines after the first indented.
_CATALOGUE_TABLE: Final = """
Electronics: Headphones 60, Speaker 80, Charger 20, Keyboard 45, Mouse 25, Monitor 240,
    Webcam 55, Tablet 380, Smartwatch 220, Laptop 950
Home: Lamp 35, Mug 12, Pillow 20, Blanket 40, Kettle 35, Vase 25, Wall Clock 30, Rug 120,
    Towel Set 30, Coffee Maker 90
Garden: Hose 30, Planter 25, Shears 20, Rake 22, Bird Feeder 18, Lawn Mower 420,
    Watering Can 15, Seed Kit 10, Grill 350, Hammock 70
Toys: Puzzle 18, Robot 60, Kite 15, Plush Bear 20, Board Game 35, Train Set 90, Yo-Yo 5,
    Drone 160, Doll House 120, Building Blocks 40
Books: Cookbook 25, Novel 14, Atlas 40, Journal 12, Comic 8, Biography 20, Travel Guide 18,
    Poetry Collection 15, Thriller 13, Textbook 85
Clothing: T-Shirt 15, Jacket 110, Scarf 20, Sneakers 85, Hoodie 45, Jeans 55, Cap 18,
    Raincoat 75, Socks 8, Sweater 50
Sports: Yoga Mat 25, Dumbbell 35, Tennis Racket 90, Football 25, Bike Helmet 55,
    Water Bottle 15, Running Shoes 110, Treadmill 800, Backpack 50, Skateboard 70
Beauty: Lipstick 18, Face Cream 30, Shampoo 9, Perfume 75, Nail Polish 8, Hair Dryer 60,
    Serum 35, Body Lotion 12, Eye Palette 28, Razor 15
"""


def _parse_catalogue(table: str) -> dict[str, tuple[tuple[str, int], ...]]:
    """The catalogue table as {category: ((noun, typical price), ...)}, in table order."""
    catalogue: dict[str, tuple[tuple[str, int], ...]] = {}
    for paragraph in re.split(r"\n(?=\S)", table.strip()):
        category, items = paragraph.split(":", 1)
        pairs = (" ".join(item.split()).rsplit(" ", 1) for item in items.split(","))
        catalogue[category] = tuple((noun, int(price)) for noun, price in pairs)
    return catalogue


_CATALOGUE: Final = _parse_catalogue(_CATALOGUE_TABLE)
_ADJECTIVES: Final = {
    "Mini": 0.7, "Essential": 0.8, "Compact": 0.85, "Classic": 1.0, "Eco": 1.0, "Urban": 1.0,
    "Vintage": 1.1, "Smart": 1.2, "Ultra": 1.3, "Pro": 1.4, "Premium": 1.5, "Deluxe": 1.6,
}  # fmt: skip
_SECOND_VARIANT_SHARE: Final = 0.25  # share of nouns sold in a second adjective variant
_PRICE_NOISE_SIGMA: Final = 0.35  # lognormal spread of a product's price around its noun's
_PRICE_LEVEL: Final = 0.8  # scales the whole catalogue so the median price is near 30
# Cents subtracted from a whole price, for shop-like endings: 19.99, 19.95, 19.49, 20.00.
_CHARM_CENTS: Final = (1, 1, 1, 5, 51, 0)
_CUSTOMER_POOL: Final = 2000
_CUSTOMER_SKEW: Final = (1.0, 10.0)  # Zipf-like weight 1 / (rank + offset) ** exponent
_PRODUCT_SKEW: Final = (0.8, 3.0)

_REGIONS: Final = ("North", "South", "East", "West", "Central")
_REGION_WEIGHTS: Final = (0.28, 0.22, 0.20, 0.18, 0.12)
_HOUR_WEIGHTS: Final = (
    0.5, 0.3, 0.2, 0.2, 0.2, 0.3, 0.8, 1.5, 2.5, 3.5, 4.0, 4.5,
    5.0, 4.8, 4.2, 4.0, 4.2, 4.8, 5.5, 6.0, 5.8, 4.5, 2.8, 1.2,
)  # fmt: skip
_LINE_WEIGHTS: Final = (0.60, 0.20, 0.10, 0.06, 0.04)  # lines per order: 1..5
_QUANTITY_WEIGHTS: Final = (0.55, 0.20, 0.10, 0.06, 0.04, 0.02, 0.012, 0.008, 0.006, 0.004)
_RETURN_SHARE: Final = 0.005
_NULL_CUSTOMER_SHARE: Final = 0.01
_DISCOUNT_SHARE: Final = 0.08
_DISCOUNT_RANGE: Final = (0.10, 0.25)


@dataclass(frozen=True)
class _Pool:
    """A fixed population to draw from: its rows and the probability of drawing each."""

    frame: pl.DataFrame
    weights: np.ndarray


def generate_day(
    day: datetime.date, rows: int, seed: int, dirty_ratio: float = 0.0
) -> pl.DataFrame:
    """One day's sales as text columns (the canonical columns of contract.CANONICAL_COLUMNS, all
    pl.String, nulls as null).

    Text, not typed values, so dirty values look exactly as they would in a landing file. The clean
    rows do not depend on dirty_ratio: the dirt only replaces values and inserts copies.
    """
    _check_day_args(rows, seed, dirty_ratio)
    clean_seq, dirt_seq = np.random.SeedSequence([seed, day.toordinal()]).spawn(2)
    rng = np.random.default_rng(clean_seq)
    lines = _order_lines(rows, rng)
    frame = _clean_day(day, lines, rng)
    n_dirty = dirty_count(rows, dirty_ratio)
    if n_dirty == 0:
        return frame
    return add_dirt(frame, day, lines, n_dirty, np.random.default_rng(dirt_seq))


def generate_sales(
    out_dir: Path,
    start: datetime.date,
    days: int,
    rows_per_day: int,
    seed: int = 42,
    dirty_ratio: float = 0.0,
    fmt: FileFormat | str = FileFormat.csv,
) -> list[Path]:
    """Write one file per day, `sales_YYYY-MM-DD.<ext>` (ext = fmt), returning the paths in date
    order.

    Each day is seeded from (seed, day), so a file does not depend on `start` or `days`, and the
    same arguments always give byte-identical files.
    """
    if days < 1:
        raise UsageError(f"days must be at least 1, got {days}")
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    _check_day_args(rows_per_day, seed, dirty_ratio)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"{out_dir}: cannot write files there ({error.strerror or error})"
        ) from None
    paths = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        path = out_dir / f"sales_{day.isoformat()}.{fmt}"
        _write(generate_day(day, rows_per_day, seed, dirty_ratio), path, fmt)
        paths.append(path)
    return paths


def _check_day_args(rows: int, seed: int, dirty_ratio: float) -> None:
    """Reject arguments that cannot make a day, with a one-line message."""
    if rows < 1:
        raise UsageError(f"rows per day must be at least 1, got {rows}")
    if seed < 0:
        raise UsageError(f"seed must be zero or positive, got {seed}")
    if not 0.0 <= dirty_ratio <= MAX_DIRTY_RATIO:
        raise UsageError(f"dirty_ratio must be between 0 and {MAX_DIRTY_RATIO}, got {dirty_ratio}")


# --- the fixed catalogue and customer pool ---------------------------------------------------


def _zipf_weights(n: int, exponent: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like probabilities over n items, shuffled so popularity does not follow id order."""
    weights = 1.0 / (np.arange(n) + offset) ** exponent
    return rng.permutation(weights / weights.sum())


@functools.cache
def _catalogue() -> _Pool:
    """The products on sale: sku, name, category and a charm-priced base price in cents."""
    rng = np.random.default_rng(_CATALOGUE_SEED)
    adjectives = np.array(list(_ADJECTIVES))
    factors = np.array(list(_ADJECTIVES.values()))
    nouns = [(cat, noun, price) for cat, items in _CATALOGUE.items() for noun, price in items]
    extra = rng.random(len(nouns)) < _SECOND_VARIANT_SHARE
    noun_idx = np.sort(np.concatenate([np.arange(len(nouns)), np.flatnonzero(extra)]))
    first = np.r_[True, noun_idx[1:] != noun_idx[:-1]]
    adj_idx = _distinct_adjectives(first, len(adjectives), rng)
    typical = np.array([nouns[i][2] for i in noun_idx]) * factors[adj_idx] * _PRICE_LEVEL
    price = typical * rng.lognormal(0.0, _PRICE_NOISE_SIGMA, noun_idx.size)
    charm = rng.choice(np.array(_CHARM_CENTS), noun_idx.size)
    cents = np.maximum(np.rint(price).astype(np.int64) * 100 - charm, 99)
    sku_numbers = np.sort(rng.choice(np.arange(1, 20_000), noun_idx.size, replace=False))
    frame = pl.DataFrame(
        {
            "sku": [f"SKU-{n:05d}" for n in sku_numbers],
            "product": [
                f"{adjectives[a]} {nouns[i][1]}" for a, i in zip(adj_idx, noun_idx, strict=True)
            ],
            "category": [nouns[i][0] for i in noun_idx],
            "price_cents": cents,
        }
    )
    return _Pool(frame, _zipf_weights(frame.height, *_PRODUCT_SKEW, rng))


def _distinct_adjectives(first: np.ndarray, n_adj: int, rng: np.random.Generator) -> np.ndarray:
    """An adjective per product; a noun's second variant gets a different one than its first."""
    adj = rng.integers(0, n_adj, first.size)
    shift = rng.integers(1, n_adj, first.size)
    following = np.flatnonzero(~first)
    adj[following] = (adj[following - 1] + shift[following]) % n_adj
    return adj


@functools.cache
def _customers() -> _Pool:
    """The customers who buy: ids like C000123, a few of them much more often than the rest."""
    rng = np.random.default_rng(_CATALOGUE_SEED + 1)
    numbers = np.sort(rng.choice(np.arange(1, 100_000), _CUSTOMER_POOL, replace=False))
    frame = pl.DataFrame({"customer_id": [f"C{n:06d}" for n in numbers]})
    return _Pool(frame, _zipf_weights(_CUSTOMER_POOL, *_CUSTOMER_SKEW, rng))


# --- a clean day ---------------------------------------------------------------------------


def _order_lines(rows: int, rng: np.random.Generator) -> np.ndarray:
    """How many lines each order of the day has, summing to exactly `rows`."""
    drawn = rng.choice(np.arange(1, len(_LINE_WEIGHTS) + 1), rows, p=_LINE_WEIGHTS)
    ends = np.cumsum(drawn)
    n_orders = int(np.searchsorted(ends, rows)) + 1
    lines = drawn[:n_orders].copy()
    lines[-1] -= ends[n_orders - 1] - rows
    return lines


def _clean_day(day: datetime.date, lines: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """A clean day: orders sorted by time, expanded into one row per order line."""
    orders = _orders(day, lines.size, rng)
    order_of_row = np.repeat(np.arange(lines.size), lines)
    line_no = np.arange(order_of_row.size) - np.repeat(np.cumsum(lines) - lines, lines)
    items = _order_items(order_of_row, line_no, lines.size, rng)
    return pl.concat([orders[order_of_row], items], how="horizontal").select(CANONICAL_COLUMNS)


def _orders(day: datetime.date, n_orders: int, rng: np.random.Generator) -> pl.DataFrame:
    """One row per order, numbered in time order: id, timestamp, customer and region."""
    hours = rng.choice(24, n_orders, p=np.array(_HOUR_WEIGHTS) / sum(_HOUR_WEIGHTS))
    seconds = np.sort(hours * 3600 + rng.integers(0, 3600, n_orders))
    customers = _customers()
    customer = rng.choice(customers.frame.height, n_orders, p=customers.weights)
    no_customer = rng.random(n_orders) < _NULL_CUSTOMER_SHARE
    region = rng.choice(len(_REGIONS), n_orders, p=_REGION_WEIGHTS)
    return pl.DataFrame(
        {
            "order_id": pl.int_range(1, n_orders + 1, eager=True),
            "seconds": seconds,
            "customer_id": customers.frame["customer_id"].gather(customer),
            "no_customer": no_customer,
            "region": pl.Series(_REGIONS).gather(region),
        }
    ).select(
        pl.concat_str(pl.lit(f"O{day:%Y%m%d}-"), _zfill(pl.col("order_id"), 6)).alias("order_id"),
        _timestamp(day, pl.col("seconds")).alias("order_ts"),
        pl.when(pl.col("no_customer"))
        .then(None)
        .otherwise(pl.col("customer_id"))
        .alias("customer_id"),
        "region",
    )


def _order_items(
    order_of_row: np.ndarray, line_no: np.ndarray, n_orders: int, rng: np.random.Generator
) -> pl.DataFrame:
    """What each line sells: a distinct product per line of an order, a quantity and a price."""
    catalogue = _catalogue()
    n_products = catalogue.frame.height
    first = rng.choice(n_products, n_orders, p=catalogue.weights)
    # Lines step through the catalogue by a per-order stride small enough that the (at most five)
    # lines of an order never wrap onto the same product, so order_id + sku is unique.
    stride = rng.integers(1, (n_products - 1) // (len(_LINE_WEIGHTS) - 1) + 1, n_orders)
    product = (first[order_of_row] + line_no * stride[order_of_row]) % n_products
    n_rows = order_of_row.size
    quantity = rng.choice(np.arange(1, len(_QUANTITY_WEIGHTS) + 1), n_rows, p=_quantity_p())
    quantity = np.where(rng.random(n_rows) < _RETURN_SHARE, -quantity, quantity)
    items = catalogue.frame[product]
    cents = _discounted(items["price_cents"].to_numpy(), rng)
    return items.select("sku", "product", "category").with_columns(
        quantity=pl.Series(quantity).cast(pl.String),
        unit_price=_money(pl.lit(pl.Series(cents))),
    )


def _discounted(cents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """List prices with a promotion taken off some lines, which gives less tidy cents."""
    on_sale = rng.random(cents.size) < _DISCOUNT_SHARE
    discount = np.where(on_sale, rng.uniform(*_DISCOUNT_RANGE, cents.size), 0.0)
    return np.maximum(np.rint(cents * (1.0 - discount)), 1).astype(np.int64)


def _quantity_p() -> np.ndarray:
    """Normalised quantity weights (the constants are readable, not exactly summing to one)."""
    weights = np.array(_QUANTITY_WEIGHTS)
    return weights / weights.sum()


def _zfill(expr: pl.Expr, width: int) -> pl.Expr:
    """An integer expression as zero-padded text."""
    return expr.cast(pl.String).str.zfill(width)


def _timestamp(day: datetime.date, seconds: pl.Expr) -> pl.Expr:
    """Seconds since midnight of `day` as ISO text `YYYY-MM-DDTHH:MM:SS`."""
    return pl.concat_str(
        pl.lit(f"{day.isoformat()}T"),
        _zfill(seconds // 3600, 2),
        pl.lit(":"),
        _zfill(seconds // 60 % 60, 2),
        pl.lit(":"),
        _zfill(seconds % 60, 2),
    )


def _money(cents: pl.Expr) -> pl.Expr:
    """Non-negative cents as a plain two-place decimal, never in exponent notation."""
    return pl.concat_str(_zfill(cents // 100, 1), pl.lit("."), _zfill(cents % 100, 2))


# --- writing ----------------------------------------------------------------------------------


def _write(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    """Write a day in `fmt` so that the same frame always gives the same bytes."""
    if fmt == "parquet":
        frame.write_parquet(path, compression="zstd", compression_level=3, statistics=True)
    elif fmt == "jsonl":
        path.write_bytes(frame.write_ndjson().encode("utf-8"))
    else:
        data = frame.write_csv(line_terminator="\n", null_value="").encode("utf-8")
        path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if fmt == "csv.gz" else data)
