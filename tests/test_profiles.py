"""Source profiles: an explicit column map (and rule overrides) instead of header aliasing, as
data: the built-in `online-retail`, profiles from salesflow.toml, and their failure modes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import polars as pl
import pytest
from prefect.context import TaskRunContext
from typer.testing import CliRunner

from salesflow import stages
from salesflow.cli import app
from salesflow.config import load_settings
from salesflow.errors import AmbiguousColumnError, MissingColumnError, UsageError
from salesflow.flows.caching import prepare_key, validate_key
from salesflow.manifest import BatchManifest
from salesflow.profiles import BUILT_IN_PROFILES, apply_profile, resolve_profile
from salesflow.rules import ValidationRules
from salesflow.sources.files import map_columns, map_profile_columns

ONLINE_RETAIL_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
RETAIL_CSV = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country,Note\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,"
    "United Kingdom,x\n"
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom,y\n"
    "A563186,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom,z\n"
)
SHOP_TOML = """
[profiles.my-shop]
timezone = "Europe/Madrid"
max_reject_share = 0.2

[profiles.my-shop.columns]
"Order Number" = "order_id"
"When" = "order_ts"
"Item" = "sku"
"Qty" = "quantity"
"Price" = "unit_price"
"Store" = "region"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def manifest(**update: object) -> BatchManifest:
    base = BatchManifest(
        batch_id="day.csv", source="/in/day.csv", sha256="ab" * 32, started_at=datetime.now(UTC)
    )
    return base.model_copy(update=update)


def test_online_retail_maps_every_column_of_the_uci_export() -> None:
    profile = resolve_profile(load_settings(), "online-retail")

    mapping = map_profile_columns(
        "retail.csv", ONLINE_RETAIL_HEADER, "online-retail", profile.columns
    )

    assert mapping == {
        "order_id": "InvoiceNo",
        "order_ts": "InvoiceDate",
        "customer_id": "CustomerID",
        "sku": "StockCode",
        "product": "Description",
        "quantity": "Quantity",
        "unit_price": "UnitPrice",
        "region": "Country",
    }
    assert profile.overrides() == {"timezone": "Europe/London"}


def test_the_profile_map_wins_over_aliases_and_ignores_unmapped_columns() -> None:
    # Header aliasing would take `date` as order_ts and `price` as unit_price.
    header = [" WHEN ", "date", "item", "qty", "cost", "price", "zone", "notes"]
    columns = {"when": "order_ts", "Item": "product", "QTY": "quantity", "cost": "unit_price"}
    columns["zone"] = "region"

    mapping = map_profile_columns("day.csv", header, "shop", columns)

    assert mapping == {
        "order_ts": " WHEN ",
        "sku": "item",  # taken from product, as without a profile
        "product": "item",
        "quantity": "qty",
        "unit_price": "cost",
        "region": "zone",
    }
    assert map_columns("day.csv", header)["order_ts"] == "date"


def test_a_profile_column_missing_from_the_file_fails_the_batch_naming_the_profile() -> None:
    header = [name for name in ONLINE_RETAIL_HEADER if name not in ("UnitPrice", "Country")]

    with pytest.raises(MissingColumnError) as raised:
        map_profile_columns(
            "retail.csv", header, "online-retail", BUILT_IN_PROFILES["online-retail"].columns
        )

    assert str(raised.value) == (
        "retail.csv: missing columns 'UnitPrice', 'Country' of profile 'online-retail' "
        f"(found: {', '.join(header)})"
    )


def test_a_mapped_column_repeated_in_the_file_is_ambiguous() -> None:
    header = [*ONLINE_RETAIL_HEADER, "Country_duplicated_0"]

    with pytest.raises(AmbiguousColumnError, match="'Country' of profile 'online-retail'"):
        map_profile_columns(
            "retail.csv", header, "online-retail", BUILT_IN_PROFILES["online-retail"].columns
        )


def test_an_unknown_profile_is_one_line_listing_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "salesflow.toml", SHOP_TOML)

    with pytest.raises(UsageError) as raised:
        resolve_profile(load_settings(), "online_retail")

    message = str(raised.value)
    assert message.startswith("unknown profile 'online_retail' (known: my-shop, online-retail)")
    assert "\n" not in message
    assert raised.value.exit_code == 2


def test_a_profile_from_salesflow_toml_reads_its_file_with_its_rules(tmp_path: Path) -> None:
    write(tmp_path / "salesflow.toml", SHOP_TOML)
    source = write(
        tmp_path / "in" / "shop.csv",
        "Order Number,When,Item,Qty,Price,Store,Comment\n"
        "A1,2024-04-01T10:00:00Z,S1,2,10.5,Centro,first\n"
        "A2,2024-04-01 10:00:00,S2,0,3,Centro,zero\n",
    )
    settings = load_settings()
    profile = resolve_profile(settings, "my-shop")
    ruled = apply_profile(settings, profile)

    staged = stages.extract(
        source, tmp_path / "staging", profile="my-shop", profile_columns=profile.columns
    )
    checked = stages.validate(staged, ValidationRules.from_settings(ruled))

    assert (ruled.timezone, ruled.max_reject_share) == ("Europe/Madrid", 0.2)
    assert settings.timezone == "UTC"
    assert checked.column_map["order_id"] == "Order Number"
    assert "Comment" not in checked.column_map.values()
    assert (checked.rows_in, checked.rows_valid, checked.rows_rejected) == (2, 1, 1)
    assert checked.reason_counts == {"zero_quantity": 1}
    # 10:00 UTC is noon in Madrid (summer time): the profile's time zone is in force.
    valid = pl.read_parquet(checked.sales_path)
    assert valid["order_ts"].to_list() == [datetime(2024, 4, 1, 12, 0)]


@pytest.mark.parametrize(
    ("profile_toml", "problem"),
    [
        ('columns = { "A" = "order_id", "B" = "when" }', "unknown canonical column(s) when"),
        (
            'columns = { "When" = "order_ts", "Qty" = "quantity", "Price" = "unit_price" }',
            "no source column gives region, sku",
        ),
        (
            'columns = { "A" = "order_ts", "B" = "order_ts", "Q" = "quantity", '
            '"P" = "unit_price", "R" = "region", "S" = "sku" }',
            "more than one source column gives order_ts",
        ),
        (
            'columns = { "W" = "order_ts", "Q" = "quantity", "P" = "unit_price", '
            '"R" = "region", "S" = "sku" }\ntimezone = "Mars/Olympus"',
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            'columns = { "W" = "order_ts", "Q" = "quantity", "P" = "unit_price", '
            '"R" = "region", "S" = "sku" }\nmax_reject_shares = 0.1',
            "Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_profile_in_salesflow_toml_is_a_configuration_error(
    tmp_path: Path, profile_toml: str, problem: str
) -> None:
    write(tmp_path / "salesflow.toml", f"[profiles.bad]\n{profile_toml}\n")

    with pytest.raises(UsageError, match=r"bad configuration: profiles\.bad") as raised:
        load_settings()

    assert problem in str(raised.value)


def test_profile_overrides_are_checked_against_the_other_settings(tmp_path: Path) -> None:
    write(
        tmp_path / "salesflow.toml",
        "max_unit_price = 100000000\n"
        "[profiles.bulk]\n"
        'columns = { "W" = "order_ts", "Q" = "quantity", "P" = "unit_price", "R" = "region", '
        '"S" = "sku" }\n'
        "max_quantity = 1000000\n",
    )
    settings = load_settings()

    with pytest.raises(UsageError, match=r"profile overrides: .*max_quantity x max_unit_price"):
        apply_profile(settings, resolve_profile(settings, "bulk"))


def test_a_file_read_with_and_without_a_profile_never_shares_a_cache_key() -> None:
    plain = manifest()
    retail = manifest(profile="online-retail", profile_columns={"InvoiceNo": "order_id"})
    renamed_column = manifest(profile="online-retail", profile_columns={"Invoice": "order_id"})
    other_name = manifest(profile="other", profile_columns={"InvoiceNo": "order_id"})
    context = cast(TaskRunContext, None)  # the key functions never look at the context
    rules = ValidationRules()

    for key_of in (
        lambda m: prepare_key(
            context, {"manifest": m, "rules": rules, "bands": None, "split_rows": 0}
        ),
        lambda m: validate_key(context, {"manifest": m, "rules": rules, "bands": None}),
    ):
        keys = {key_of(m) for m in (plain, retail, renamed_column, other_name)}
        assert len(keys) == 4
        assert key_of(retail) == key_of(retail.model_copy())


def test_extract_with_a_profile_stages_the_map_and_validate_applies_the_contract(
    tmp_path: Path,
) -> None:
    source = write(tmp_path / "in" / "retail.csv", RETAIL_CSV)
    profile = BUILT_IN_PROFILES["online-retail"]

    staged = stages.extract(
        source, tmp_path / "staging", profile="online-retail", profile_columns=profile.columns
    )
    checked = stages.validate(staged, ValidationRules(timezone="Europe/London"))

    assert staged.profile == "online-retail"
    assert set(staged.column_map.values()) == set(ONLINE_RETAIL_HEADER)
    assert (checked.rows_valid, checked.rows_rejected) == (2, 1)
    assert checked.reason_counts == {"negative_price": 1}
    valid = pl.read_parquet(checked.sales_path)
    assert valid["order_id"].to_list() == ["536365", "C536379"]
    assert valid["quantity"].to_list() == [6, -1]


runner = CliRunner()


def test_cli_validate_with_an_unknown_profile_exits_2_with_one_line(tmp_path: Path) -> None:
    source = write(tmp_path / "in" / "retail.csv", RETAIL_CSV)

    result = runner.invoke(app, ["validate", "--profile", "nope", str(source)])

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: unknown profile 'nope' (known: online-retail); "
        "define it under [profiles.<name>] in salesflow.toml"
    ]


def test_cli_run_with_an_unknown_profile_exits_2_before_starting_prefect(tmp_path: Path) -> None:
    source = write(tmp_path / "in" / "retail.csv", RETAIL_CSV)

    result = runner.invoke(app, ["run", "--profile", "nope", str(source)])

    assert result.exit_code == 2
    assert "unknown profile 'nope'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_cli_validate_with_the_online_retail_profile_counts_reasons(tmp_path: Path) -> None:
    source = write(tmp_path / "in" / "retail.csv", RETAIL_CSV)

    result = runner.invoke(app, ["validate", "--profile", "online-retail", str(source)])

    assert result.exit_code == 1, result.output
    assert "negative_price 1" in result.stdout
