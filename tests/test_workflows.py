"""The GitHub Actions workflow: valid for GitHub, tests on every push and pull request with the
README's command, deploys from main only after the tests pass, with Prefect's address and key
taken from repository secrets, never written into the file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SECRET_EXPRESSION = re.compile(r"^\$\{\{\s*secrets\.[A-Z0-9_]+\s*\}\}$")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def triggers(workflow: dict[Any, Any]) -> Any:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def run_commands(job: dict[str, Any]) -> list[str]:
    return [" ".join(step["run"].split()) for step in job["steps"] if "run" in step]


def environments(node: Any) -> list[tuple[str, Any]]:
    """Every (name, value) of every `env:` mapping, at any level of the workflow."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, dict):
                found += list(value.items())
            found += environments(value)
    elif isinstance(node, list):
        for item in node:
            found += environments(item)
    return found


def test_the_workflow_is_valid_for_github() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_push_and_pull_request_is_tested(workflow: dict[Any, Any]) -> None:
    on = triggers(workflow)

    assert set(on) == {"push", "pull_request"}
    assert not on["push"] and not on["pull_request"]  # no branch or path filters


def test_the_test_job_runs_the_readme_command_on_python_3_11_with_postgres(
    workflow: dict[Any, Any],
) -> None:
    test = workflow["jobs"]["test"]

    assert test["runs-on"].startswith("ubuntu")
    assert run_commands(test) == ["make test"]
    python = [s for s in test["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert [str(step["with"]["python-version"]) for step in python] == ["3.11"]
    postgres = test["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in postgres["ports"]
    assert "secrets." not in yaml.safe_dump(test)  # pull requests from forks get no secrets


def test_deploy_runs_only_on_pushes_to_main_after_the_tests(workflow: dict[Any, Any]) -> None:
    deploy = workflow["jobs"]["deploy"]

    needs = deploy["needs"]
    assert (needs if isinstance(needs, list) else [needs]) == ["test"]
    condition = " ".join(deploy["if"].split())
    assert condition == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    commands = run_commands(deploy)
    assert "python -m pip install ." in commands
    # module entrypoints, and the worker host's folder rather than this runner's checkout
    assert commands[-1] == 'salesflow deploy --create-pool --working-dir "$SALESFLOW_WORKING_DIR"'
    assert deploy["env"]["SALESFLOW_WORKING_DIR"] == "${{ vars.SALESFLOW_WORKING_DIR }}"


def test_deploy_takes_prefects_address_and_key_from_secrets(workflow: dict[Any, Any]) -> None:
    env = workflow["jobs"]["deploy"]["env"]

    assert env["PREFECT_API_URL"] == "${{ secrets.PREFECT_API_URL }}"
    assert env["PREFECT_API_KEY"] == "${{ secrets.PREFECT_API_KEY }}"


def test_no_prefect_address_or_key_is_written_into_the_workflow(
    workflow: dict[Any, Any],
) -> None:
    prefect_settings = [(k, v) for k, v in environments(workflow) if k.startswith("PREFECT_")]
    assert prefect_settings  # the check below looks at something
    for name, value in prefect_settings:
        assert SECRET_EXPRESSION.match(str(value)), f"{name} is not taken from a secret"
    text = WORKFLOW.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    assert not re.search(r"pnu_[A-Za-z0-9]+|api\.prefect\.(cloud|dev)", text)
