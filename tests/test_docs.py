"""The README stays in step with the code: every setting, reason code and CLI command documented."""

from __future__ import annotations

import re

import pytest

from salesflow.config import Settings
from salesflow.contract import Reason
from tests.conftest import REPO
from tests.test_cli import COMMANDS

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_table(name: str) -> None:
    assert re.search(rf"^\| `{name}` \| `SALESFLOW_{name.upper()}` \|", README, re.MULTILINE)


@pytest.mark.parametrize("code", [str(reason) for reason in Reason])
def test_every_reason_code_is_in_the_reason_table(code: str) -> None:
    assert re.search(rf"^\| `{re.escape(code)}` \|", README, re.MULTILINE)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_cli_table(command: str) -> None:
    assert f"| `salesflow {command}" in README


def test_ci_runs_exactly_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, re.MULTILINE)
    assert commands == ["make demo", "make test"]
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == ["make test"]
