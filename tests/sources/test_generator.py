"""Tests of the synthetic sales generator: determinism, layout, realism and every kind of dirt."""

from __future__ import annotations

import datetime
import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from salesflow.contract import CANONICAL_COLUMNS, REQUIRED_VALUES
from salesflow.errors import UsageError
from salesflow.sources.generator import FORMATS, FileFormat, generate_day, generate_sales

DAY = datetime.date(2024, 1, 5)
ISO = "%Y-%m-%dT%H:%M:%S"
WHOLE = r"^-?\d+$"
DECIMAL = r"^-?\d+(\.\d{1,4})?$"
CLEAN_ROWS = 20_000


def _read(path: Path) -> pl.DataFrame:
    """A landing file read back as text, the way a reader that infers nothing would see it."""
    if path.name.endswith(".csv.gz"):
        return pl.read_csv(gzip.decompress(path.read_bytes()), infer_schema=False)
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_ndjson(path, schema=dict.fromkeys(CANONICAL_COLUMNS, pl.String))


def _copies(frame: pl.DataFrame) -> pl.Expr:
    """Rows that are exact copies (nulls included) of the row just before them."""
    return pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift()) for c in frame.columns)


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return generate_day(DAY, CLEAN_ROWS, seed=7)


# --- determinism and layout -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_arguments_give_identical_bytes(tmp_path: Path, fmt: FileFormat) -> None:
    first = generate_sales(tmp_path / "a", DAY, 2, 500, seed=1, dirty_ratio=0.1, fmt=fmt)
    again = generate_sales(tmp_path / "b", DAY, 2, 500, seed=1, dirty_ratio=0.1, fmt=fmt)
    other = generate_sales(tmp_path / "c", DAY, 2, 500, seed=2, dirty_ratio=0.1, fmt=fmt)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    for one, two in zip(first, other, strict=True):
        assert one.read_bytes() != two.read_bytes()


def test_file_names_count_and_order(tmp_path: Path) -> None:
    out = tmp_path / "not" / "yet" / "there"
    paths = generate_sales(out, datetime.date(2024, 1, 1), days=3, rows_per_day=20)
    assert [p.name for p in paths] == [
        "sales_2024-01-01.csv",
        "sales_2024-01-02.csv",
        "sales_2024-01-03.csv",
    ]
    assert all(p.parent == out and p.is_file() for p in paths)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]


@pytest.mark.parametrize("fmt", FORMATS)
def test_extension_is_the_format(tmp_path: Path, fmt: FileFormat) -> None:
    (path,) = generate_sales(tmp_path, DAY, days=1, rows_per_day=10, fmt=fmt)
    assert path.name == f"sales_2024-01-05.{fmt}"


def test_a_day_does_not_depend_on_start_or_days(tmp_path: Path) -> None:
    run = generate_sales(tmp_path / "run", DAY, days=3, rows_per_day=300, dirty_ratio=0.2)
    alone = generate_sales(tmp_path / "alone", DAY + datetime.timedelta(days=1), 1, 300, 42, 0.2)
    assert run[1].name == alone[0].name
    assert run[1].read_bytes() == alone[0].read_bytes()
    first, second = (_read(p).select(pl.col("order_ts").str.slice(11)) for p in run[:2])
    assert not first.head(50).equals(second.head(50))  # days differ in more than their date


def test_gzip_header_carries_no_timestamp(tmp_path: Path) -> None:
    (path,) = generate_sales(tmp_path, DAY, days=1, rows_per_day=50, fmt="csv.gz")
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == bytes(4)  # MTIME 0, so the bytes do not depend on when they were written


def test_csv_layout(tmp_path: Path) -> None:
    (path,) = generate_sales(tmp_path, DAY, days=1, rows_per_day=400, dirty_ratio=0.3)
    text = path.read_bytes().decode("utf-8")
    assert text.split("\n", 1)[0] == ",".join(CANONICAL_COLUMNS)
    assert "\r" not in text
    assert text.endswith("\n")
    assert "\n," in text  # a missing order_id is an empty first field


def test_jsonl_layout(tmp_path: Path) -> None:
    (path,) = generate_sales(tmp_path, DAY, days=1, rows_per_day=400, dirty_ratio=0.3, fmt="jsonl")
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert all(list(r) == list(CANONICAL_COLUMNS) for r in records)
    assert all(v is None or isinstance(v, str) for r in records for v in r.values())
    assert any(r["order_id"] is None for r in records)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_to_the_generated_values(tmp_path: Path, fmt: FileFormat) -> None:
    (path,) = generate_sales(tmp_path, DAY, days=1, rows_per_day=600, dirty_ratio=0.3, fmt=fmt)
    expected = generate_day(DAY, 600, seed=42, dirty_ratio=0.3)
    read = _read(path)
    assert read.schema == pl.Schema(dict.fromkeys(CANONICAL_COLUMNS, pl.String))
    assert_frame_equal(read, expected)


# --- clean data -----------------------------------------------------------------------------


def test_clean_day_has_canonical_text_columns(clean: pl.DataFrame) -> None:
    assert clean.columns == list(CANONICAL_COLUMNS)
    assert set(clean.dtypes) == {pl.String}
    assert clean.height == CLEAN_ROWS


def test_clean_day_has_no_missing_required_values(clean: pl.DataFrame) -> None:
    assert clean.select(pl.col(REQUIRED_VALUES).null_count()).row(0) == (0,) * 6
    assert clean.filter(pl.col("region").str.strip_chars() == "").height == 0


def test_clean_quantities_are_non_zero_whole_numbers(clean: pl.DataFrame) -> None:
    assert clean["quantity"].str.contains(WHOLE).all()
    quantity = clean["quantity"].cast(pl.Int64)
    assert (quantity != 0).all()
    assert quantity.is_between(1, 5).sum() > 0.9 * quantity.len()


def test_clean_prices_are_plain_two_place_decimals(clean: pl.DataFrame) -> None:
    assert clean["unit_price"].str.contains(r"^\d+\.\d{2}$").all()
    assert (clean["unit_price"].cast(pl.Decimal(18, 4)) > 0).all()


def test_clean_timestamps_are_iso_on_the_day_and_sorted(clean: pl.DataFrame) -> None:
    ts = clean["order_ts"].str.to_datetime(ISO, strict=True)
    assert (ts.dt.date() == DAY).all()
    assert ts.is_sorted()
    hours = ts.dt.hour()
    assert (hours.is_between(18, 21)).sum() > 3 * (hours.is_between(1, 4)).sum()


def test_clean_rows_are_never_duplicates(clean: pl.DataFrame) -> None:
    assert clean.is_duplicated().sum() == 0
    assert clean.select("order_id", "sku").is_duplicated().sum() == 0


def test_clean_shares_of_missing_customers_and_returns(clean: pl.DataFrame) -> None:
    no_customer, returns = clean.select(
        pl.col("customer_id").is_null().mean(), (pl.col("quantity").cast(pl.Int64) < 0).mean()
    ).row(0)
    assert 0.002 <= no_customer <= 0.03
    assert 0.001 <= returns <= 0.02


def test_clean_day_looks_like_a_shop(clean: pl.DataFrame) -> None:
    assert 60 <= clean["sku"].n_unique() <= 120
    assert clean["sku"].str.contains(r"^SKU-\d{5}$").all()
    assert clean["order_id"].str.contains(r"^O20240105-\d{6}$").all()
    assert clean["customer_id"].drop_nulls().str.contains(r"^C\d{6}$").all()
    assert clean["category"].n_unique() == 8
    regions = clean.group_by("region").len()
    assert regions.height == 5
    assert regions.select(pl.col("len").max() > 1.5 * pl.col("len").min()).item()
    median_price = clean.unique("sku").select(pl.col("unit_price").cast(pl.Float64).median())
    assert 15 <= median_price.item() <= 60
    assert (clean["unit_price"].cast(pl.Float64) > 500).any()


def test_orders_span_lines_and_customers_return(clean: pl.DataFrame) -> None:
    orders = clean.group_by("order_id").agg(
        lines=pl.len(),
        skus=pl.col("sku").n_unique(),
        customers=pl.col("customer_id").n_unique(),
        total=(pl.col("quantity").cast(pl.Int64) * pl.col("unit_price").cast(pl.Float64)).sum(),
    )
    assert (orders["lines"] > 1).any()
    assert (orders["lines"] == orders["skus"]).all()
    assert (orders["customers"] == 1).all()
    assert (orders["total"] > 2000).any()
    visits = (
        clean.drop_nulls("customer_id").group_by("customer_id").agg(pl.col("order_id").n_unique())
    )
    assert visits.select(pl.col("order_id").max()).item() > 5
    assert visits.height < orders.height


# --- dirty data -----------------------------------------------------------------------------

DIRT = {
    "missing_order_id": pl.col("order_id").is_null(),
    "missing_sku": pl.col("sku").is_null() & pl.col("product").is_null(),
    "missing_order_ts": pl.col("order_ts").is_null(),
    "missing_quantity": pl.col("quantity").is_null(),
    "missing_unit_price": pl.col("unit_price").is_null(),
    "missing_region": pl.col("region").is_null() | (pl.col("region").str.strip_chars() == ""),
    "bad_type:order_ts": pl.col("order_ts").is_not_null()
    & pl.col("order_ts").str.to_datetime(ISO, strict=False).is_null(),
    "bad_type:quantity": pl.col("quantity").is_not_null() & ~pl.col("quantity").str.contains(WHOLE),
    "bad_type:unit_price": pl.col("unit_price").is_not_null()
    & ~pl.col("unit_price").str.contains(DECIMAL),
    "zero_quantity": pl.col("quantity") == "0",
    "negative_price": pl.col("unit_price").str.contains(DECIMAL)
    & pl.col("unit_price").str.starts_with("-"),
    "duplicate": pl.all_horizontal(
        pl.col(c).eq_missing(pl.col(c).shift()) for c in CANONICAL_COLUMNS
    ),
}


@pytest.mark.parametrize(("rows", "ratio"), [(50, 0.001), (5_000, 0.1), (2_000, 0.5)])
def test_every_kind_of_dirt_is_present(rows: int, ratio: float) -> None:
    dirty = generate_day(DAY, rows, seed=3, dirty_ratio=ratio)
    counts = dirty.select(p.sum().alias(k) for k, p in DIRT.items()).row(0)
    missing = [kind for kind, n in zip(DIRT, counts, strict=True) if n == 0]
    assert missing == []


def test_missing_regions_are_null_empty_and_blank() -> None:
    region = generate_day(DAY, 5_000, seed=3, dirty_ratio=0.2)["region"]
    assert region.is_null().any()
    assert (region == "").any()
    assert ((region.str.len_chars() > 0) & (region.str.strip_chars() == "")).any()


@pytest.mark.parametrize(("rows", "ratio"), [(1_000, 0.05), (5_000, 0.2), (300, 0.5)])
def test_dirt_only_alters_rows_and_inserts_copies(rows: int, ratio: float) -> None:
    dirty = generate_day(DAY, rows, seed=5, dirty_ratio=ratio)
    clean = generate_day(DAY, rows, seed=5)
    is_copy = dirty.select(_copies(dirty)).to_series()
    copies = int(is_copy.sum())
    assert copies > 0
    assert dirty.height == rows + copies
    assert dirty.unique().height == rows
    originals = dirty.filter(~is_copy)
    changed = originals.select(
        pl.any_horizontal(pl.col(c).ne_missing(clean[c]) for c in CANONICAL_COLUMNS)
    ).to_series()
    assert int(changed.sum()) + copies == round(ratio * rows)
    assert_frame_equal(originals.filter(~changed), clean.filter(~changed))


def test_dirty_rows_are_otherwise_realistic() -> None:
    dirty = generate_day(DAY, 5_000, seed=9, dirty_ratio=0.3)
    bad_quantity = dirty.filter(DIRT["bad_type:quantity"])
    assert bad_quantity["order_id"].str.contains(r"^O20240105-\d{6}$").all()
    assert bad_quantity["unit_price"].str.contains(r"^\d+\.\d{2}$").all()
    assert not dirty["unit_price"].str.contains("[eE]").any()


def test_no_dirt_when_ratio_is_zero(clean: pl.DataFrame) -> None:
    counts = clean.select(p.sum().alias(k) for k, p in DIRT.items()).row(0)
    assert counts == (0,) * len(DIRT)


# --- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"days": 0},
        {"days": -3},
        {"rows_per_day": 0},
        {"dirty_ratio": -0.01},
        {"dirty_ratio": 0.51},
        {"dirty_ratio": float("nan")},
        {"fmt": "xlsx"},
        {"seed": -1},
    ],
)
def test_bad_arguments_raise_usage_error(tmp_path: Path, bad: dict[str, object]) -> None:
    args: dict[str, object] = {"start": DAY, "days": 1, "rows_per_day": 10} | bad
    with pytest.raises(UsageError) as raised:
        generate_sales(tmp_path / "out", **args)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [{"rows": 0}, {"dirty_ratio": 0.9}, {"seed": -5}])
def test_generate_day_rejects_bad_arguments(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"day": DAY, "rows": 10, "seed": 1} | bad
    with pytest.raises(UsageError):
        generate_day(**args)  # type: ignore[arg-type]
