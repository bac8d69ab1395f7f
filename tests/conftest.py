"""Shared fixtures: settings on a temporary data dir, small landing files, a Prefect test API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before Prefect is imported anywhere: no telemetry, quiet console, generous start-up.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The CLI keeps Prefect off the console unless --verbose; tests see the same output.
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")

from salesflow.config import Settings, load_settings
from tests.prefect_server import prefect_server, prefect_server_on_postgres  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
COURSE_CSV = DATA / "ventas_curso.csv"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the whole session; flows run against it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own salesflow.toml or SALESFLOW_* variables."""
    for name in list(os.environ):
        if name.startswith("SALESFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a private data dir, with instant retries so failure tests stay fast. The
    test's folder is the landing root: a file's batch id is its path below it (`in/a.csv`)."""
    return load_settings(
        data_dir=tmp_path / "data", retry_delay_seconds=0, max_workers=2, landing_dir=tmp_path
    )


def write_csv(path: Path, header: str, *rows: str) -> Path:
    """A small CSV landing file from a header line and row lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


CANONICAL_HEADER = "order_id,order_ts,customer_id,sku,product,category,quantity,unit_price,region"


def fresh_process_env(prefect_home: Path) -> dict[str, str]:
    """Environment for `salesflow` in its own process, as a user runs it: no SALESFLOW_ or
    PREFECT_ settings of the test session, and its own Prefect home (its own ephemeral API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESFLOW_", "PREFECT_"))}
    env["PREFECT_HOME"] = str(prefect_home)
    return env


def run_salesflow(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`salesflow ARGS` in a process of its own, its output captured; any exit code returns."""
    return subprocess.run(
        [sys.executable, "-m", "salesflow.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_salesflow(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """`salesflow ARGS` started in a session of its own, so a test can kill it together with
    its ephemeral Prefect server (os.killpg); its output is discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "salesflow.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


CHROMIUM = Path("/usr/bin/chromium")
# This machine is offline: without the background-networking flags Chromium keeps calling
# Google's hosts and logs their failures.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEST_ARTIFACTS = REPO / "test-artifacts"  # screenshots for a person to look at (git-ignored)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (installed by `make test`) driven by Playwright; Playwright's own
    browser download is never used. Per module, not per session: Playwright's sync API runs an
    event loop in this thread while it is open, and Prefect's sync calls (`State.result()`)
    then hand back coroutines to the tests that follow."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` (or `make chromium`) installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
