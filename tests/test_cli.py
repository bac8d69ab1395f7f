"""The command line: exit codes, one-line errors, help, and the demo in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from salesflow.cli import app
from salesflow.warehouse import PostgresWarehouse
from tests.conftest import (
    CANONICAL_HEADER,
    COURSE_CSV,
    fresh_process_env,
    run_salesflow,
    write_csv,
)
from tests.prefect_server import fresh_postgres_database, with_schema
from tests.warehouse.batches import staged

runner = CliRunner()


def run_in_fresh_process(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`salesflow ARGS` as a user runs it: its own process, its own ephemeral Prefect API."""
    env = fresh_process_env(cwd / "prefect-home")
    command = [sys.executable, "-m", "salesflow.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


COMMANDS = (
    "generate",
    "run",
    "validate",
    "query",
    "demo",
    "contract",
    "rejects",
    "serve",
    "deploy",
    "status",
    "server",
    "oltp",
    "report",
)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_complete_help(command: str) -> None:
    code, out, _ = invoke(command, "--help")

    assert code == 0
    assert "Usage: salesflow " + command in " ".join(out.split())
    assert len(out.splitlines()) > 6


def test_top_level_help_lists_every_command() -> None:
    code, out, _ = invoke("--help")

    assert code == 0
    for command in COMMANDS:
        assert command in out


def test_run_on_a_missing_path_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    code, out, err = invoke("run", str(tmp_path / "nowhere.csv"))

    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'nowhere.csv'}: no such file or directory"
    assert "Traceback" not in out + err


def test_generate_with_a_bad_date_is_a_usage_error() -> None:
    code, _, err = invoke("generate", "out", "--start", "2024-13-01")

    assert code == 2
    assert err.strip() == "error: --start '2024-13-01': expected a date as YYYY-MM-DD"


def test_a_bad_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SALESFLOW_TIMEZONE", "Mars/Olympus")

    code, _, err = invoke("validate", str(COURSE_CSV))

    assert code == 2
    assert err.strip() == (
        "error: bad configuration: timezone: Value error, unknown time zone 'Mars/Olympus'"
    )


def test_validate_exit_codes_follow_the_worst_file(tmp_path: Path) -> None:
    clean = write_csv(tmp_path / "clean.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")
    unreadable = tmp_path / "empty.csv"
    unreadable.write_bytes(b"")

    assert invoke("validate", str(clean))[0] == 0
    code, out, _ = invoke("validate", str(COURSE_CSV))
    assert code == 1
    assert "missing_quantity 1" in " ".join(out.split())
    code, _, err = invoke("validate", str(clean), str(unreadable))
    assert code == 2
    assert (
        err.strip()
        == f"unreadable: {unreadable}: file is empty (0 bytes or no header): nothing to load"
    )


def test_validate_writes_nothing(tmp_path: Path) -> None:
    invoke("validate", str(COURSE_CSV))

    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_run_exits_1_and_names_each_failed_file_while_loading_the_rest(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "good.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")
    broken = tmp_path / "in" / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    warehouse = tmp_path / "wh.duckdb"

    landing = str(tmp_path / "in")
    result = run_in_fresh_process(
        tmp_path, "run", landing, "--warehouse", str(warehouse), "--landing", landing
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"failed: {broken}: not a readable Parquet file (corrupt or truncated)"
    ]
    assert "1 loaded, 0 unchanged, 1 failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT batch_id, status FROM batches ORDER BY 1").fetchall() == [
            ("broken.parquet", "failed"),
            ("good.csv", "loaded"),
        ]


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_harness")
def test_run_exits_0_and_a_rerun_reports_unchanged_batches(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh.duckdb")

    first = invoke("run", str(COURSE_CSV), "--warehouse", warehouse, "--accept-rejects")
    second = invoke("run", str(COURSE_CSV), "--warehouse", warehouse, "--accept-rejects")

    assert first[0] == 0 and "1 loaded, 0 unchanged, 0 failed" in first[1]
    assert second[0] == 0 and "0 loaded, 1 unchanged, 0 failed" in second[1]
    code, out, _ = invoke("query", "--warehouse", warehouse, "SELECT count(*) AS n FROM sales")
    assert code == 0 and "8" in out


def test_query_without_a_warehouse_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = invoke("query", "--warehouse", str(tmp_path / "none.duckdb"), "SELECT 1")

    assert code == 2
    assert "no warehouse yet; run `salesflow run` or `salesflow demo` first" in err


@pytest.mark.e2e
def test_demo_runs_offline_in_a_fresh_process_and_prints_its_summary(tmp_path: Path) -> None:
    env = fresh_process_env(tmp_path / "prefect-home")
    command = [
        sys.executable,
        "-m",
        "salesflow.cli",
        "demo",
        "--days",
        "3",
        "--rows-per-day",
        "300",
    ]

    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "3 loaded, 0 unchanged, 0 failed" in result.stdout
    assert "revenue by region" in result.stdout
    assert "salesflow query" in result.stdout
    report = (tmp_path / "salesflow-demo" / "report.html").resolve()
    assert f"report: {report}" in " ".join(result.stdout.split())
    assert 'id="chart-daily-revenue"' in report.read_text(encoding="utf-8")
    warehouse = tmp_path / "salesflow-demo" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        loaded, rejected = con.execute(
            "SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM sales_rejected)"
        ).fetchone() or (0, 0)
    assert loaded > 850 and rejected > 0
    assert sorted(p.name for p in (tmp_path / "salesflow-demo" / "landing").iterdir()) == [
        "sales_2024-01-01.csv",
        "sales_2024-01-02.csv",
        "sales_2024-01-03.csv",
    ]


def test_contract_prints_columns_every_reason_code_and_the_rules_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salesflow.contract import CONTRACT_VERSION, Reason

    monkeypatch.setenv("SALESFLOW_MAX_REJECT_SHARE", "0.2")

    code, out, _ = invoke("contract")

    flat = " ".join(out.split())
    assert code == 0
    assert f"version {CONTRACT_VERSION}" in flat
    for reason in Reason:
        assert str(reason) in flat
    assert "max_reject_share │ 0.2" in flat
    assert "precio_unitario" in flat


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_harness")
def test_rejects_shows_filters_and_exports_quarantined_rows(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh.duckdb")
    assert invoke("run", str(COURSE_CSV), "--warehouse", warehouse, "--accept-rejects")[0] == 0

    code, out, _ = invoke("rejects", "--warehouse", warehouse, "--reason", "negative_price")
    assert code == 0
    assert "sales_rejected (1 rows)" in out
    assert "│ 10 " in out and "negative_price" in out

    export = tmp_path / "rejects.csv"
    code, out, _ = invoke("rejects", "--warehouse", warehouse, "--export", str(export))
    assert code == 0 and "wrote 5 rejected row(s)" in out
    lines = export.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "batch_id,source_row,reasons,raw"
    assert len(lines) == 6


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_harness")
def test_validate_reports_rows_the_warehouse_already_holds(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh.duckdb")
    first = write_csv(tmp_path / "a.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")
    copy = write_csv(tmp_path / "b.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")
    assert invoke("run", str(first), "--warehouse", warehouse)[0] == 0

    code, out, _ = invoke("validate", str(copy), "--warehouse", warehouse)

    assert code == 1
    assert "duplicate_in_warehouse 1" in " ".join(out.split())


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_harness")
def test_run_force_reloads_an_unchanged_file(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "a.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")
    warehouse = str(tmp_path / "wh.duckdb")
    assert invoke("run", str(source), "--warehouse", warehouse)[0] == 0

    code, out, _ = invoke("run", str(source), "--warehouse", warehouse, "--force")

    assert code == 0
    assert "1 loaded, 0 unchanged, 0 failed" in out


def test_a_warehouse_under_a_file_is_one_usage_line(tmp_path: Path) -> None:
    blocker = write_csv(tmp_path / "day.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N")

    code, out, err = invoke("query", "--warehouse", str(blocker / "w.duckdb"), "SELECT 1")
    code_generate, _, err_generate = invoke("generate", str(blocker), "--days", "1")

    assert code == 2 and len(err.strip().splitlines()) == 1
    assert code_generate == 2
    assert err_generate.strip() == f"error: {blocker}: cannot write files there (File exists)"
    assert "Traceback" not in out + err + err_generate


@pytest.mark.e2e
def test_sigterm_stops_a_run_like_ctrl_c(tmp_path: Path) -> None:
    from salesflow.sources.generator import generate_sales

    generate_sales(tmp_path / "in", date(2024, 1, 1), 6, 20_000, seed=1)
    env = fresh_process_env(tmp_path / "prefect-home")
    process = subprocess.Popen(
        [sys.executable, "-m", "salesflow.cli", "run", str(tmp_path / "in")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    staging = tmp_path / "data" / "staging"
    while not staging.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.terminate()
    _, err = process.communicate(timeout=120)

    assert staging.exists(), "the run never started staging"
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err


# --- the read commands on a PostgreSQL warehouse --------------------------------------------


@pytest.fixture
def postgres_location(tmp_path: Path) -> Iterator[str]:
    """The URL of a PostgreSQL warehouse loaded with one day's file, in a database of its own."""
    with fresh_postgres_database() as database:
        location = with_schema(database, f"t_{uuid.uuid4().hex[:12]}")
        source = write_csv(
            tmp_path / "landing" / "sales_2024-03-01.csv",
            CANONICAL_HEADER,
            "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
            "O2,2024-03-01T11:00:00,C1,S2,Mug,Home,0,3.25,North",
        )
        PostgresWarehouse(location).load_batch(staged(source, tmp_path / "stage"), "run-1")
        yield location  # the database, schema and all, is dropped on the way out


def test_query_rejects_and_backfill_read_a_postgres_warehouse(
    postgres_location: str, tmp_path: Path
) -> None:
    code, out, _ = invoke(
        "query", "--warehouse", postgres_location, "SELECT sku, total FROM sales ORDER BY sku"
    )
    assert code == 0 and "S1" in out and "21.0000" in out

    code, _, err = invoke("query", "--warehouse", postgres_location, "SELECT * FROM nope")
    assert code == 2 and "query failed: " in err and "nope" in err
    assert len(err.strip().splitlines()) == 1

    export = tmp_path / "rejects.csv"
    code, out, _ = invoke("rejects", "--warehouse", postgres_location, "--export", str(export))
    assert code == 0 and "wrote 1 rejected row(s)" in out
    assert (
        export.read_text(encoding="utf-8")
        .splitlines()[1]
        .startswith("sales_2024-03-01.csv,2,zero_quantity,")
    )

    write_csv(tmp_path / "landing" / "sales_2024-03-02.csv", CANONICAL_HEADER)
    code, out, _ = invoke(
        "backfill",
        "--start",
        "2024-03-01",
        "--end",
        "2024-03-02",
        "--landing",
        str(tmp_path / "landing"),
        "--warehouse",
        postgres_location,
        "--dry-run",
    )
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert code == 0
    assert any("2024-03-01 │ 1 │ loaded │ skip" in line for line in lines)
    assert any("2024-03-02 │ 1 │ new │ run" in line for line in lines)


def test_an_empty_query_is_a_usage_error() -> None:
    for sql in ("", "  \n\t "):
        code, out, err = invoke("query", sql)

        assert code == 2
        assert err == "error: empty query: give a SQL statement, e.g. 'SELECT * FROM daily_sales'\n"
        assert out == ""


FORGED = "9 loaded, 0 unchanged, 0 failed; rows in 9, loaded 9, rejected 0"


@pytest.mark.e2e
def test_control_characters_of_file_names_are_escaped_in_every_line_a_run_prints(
    tmp_path: Path,
) -> None:
    """A file name with an ANSI escape or a newline is shown escaped, in the table, the summary,
    the failed lines, Prefect's console logs (-v) and the JSON log lines; the warehouse keeps the
    real name."""
    landing = tmp_path / "in"
    red = write_csv(
        landing / "sales_\x1b[31mred.csv", CANONICAL_HEADER, "O1,2024-01-01,C1,S1,P,C,1,2,N"
    )
    forged = write_csv(
        landing / f"sales_b\n{FORGED}.csv", CANONICAL_HEADER, "O2,2024-01-01,C1,S1,P,C,1,3,N"
    )
    broken = write_csv(landing / "bad_\x1b[2J\r.csv", "order_id,order_ts", "O3,2024-01-01")
    warehouse = tmp_path / "wh.duckdb"

    env = fresh_process_env(tmp_path / "prefect-home")
    env["COLUMNS"] = "400"  # wide enough that no table cell is cut

    result = run_salesflow(
        tmp_path,
        env,
        "-v",
        "--log-format",
        "json",
        "run",
        str(landing),
        "--warehouse",
        str(warehouse),
    )

    shown = result.stdout + result.stderr
    assert result.returncode == 1, result.stderr
    assert "\x1b" not in shown and "\r" not in shown
    assert not [line for line in shown.splitlines() if line.startswith(FORGED)]
    assert "2 loaded, 0 unchanged, 1 failed" in result.stdout
    assert "sales_\\x1b[31mred.csv" in result.stdout
    assert (
        f"failed: {landing}/bad_\\x1b[2J\\r.csv: missing required columns 'quantity', "
        "'unit_price', 'region' (found: order_id, order_ts)\n"
    ) in result.stderr
    # Prefect's console lines (text) and the JSON lines both carry the escaped names.
    text_lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert [line for line in text_lines if "sales_\\x1b[31mred.csv stage=extract" in line]
    messages = [
        json.loads(line)["message"] for line in result.stderr.splitlines() if line.startswith("{")
    ]
    extracts = [m for m in messages if "stage=extract " in m]
    assert len(extracts) == 2
    assert f"sales_b\\n{FORGED}.csv stage=extract" in " ".join(extracts)
    assert not [m for m in messages if "\x1b" in m or "\n" in m]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sources = con.execute("SELECT source, status FROM batches ORDER BY status").fetchall()
    assert sorted(sources) == sorted(
        [(str(broken), "failed"), (str(red), "loaded"), (str(forged), "loaded")]
    )
