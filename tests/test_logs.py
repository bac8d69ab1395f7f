"""`--log-format json`: every log record of a run on stderr as one JSON object per line, with
the run ids a log shipper indexes by."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from salesflow.flows.json_logs import use_json_logs
from salesflow.logs import ESCAPE_CONTROLS, EscapeControls, JsonFormatter, escape_logs
from tests.conftest import CANONICAL_HEADER, fresh_process_env, run_salesflow, write_csv


def test_a_record_becomes_one_json_line_with_its_run_ids_and_exception() -> None:
    record = logging.LogRecord(
        "prefect.task_runs", logging.WARNING, __file__, 1, "%s=%d", ("n", 3), None
    )
    record.task_run_id = "abc"
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()

    entry = json.loads(JsonFormatter().format(record))

    assert entry["level"] == "WARNING" and entry["logger"] == "prefect.task_runs"
    assert entry["message"] == "n=3" and entry["task_run_id"] == "abc"
    assert "ValueError: boom" in entry["exception"]
    assert "flow_run_id" not in entry  # absent ids are left out, not null
    assert "\n" not in JsonFormatter().format(record)


def test_use_json_logs_catches_prefect_child_loggers() -> None:
    stream = io.StringIO()
    handler = use_json_logs(stream)
    try:
        # A child of "prefect" without Prefect's API handler (flow_runs would want a run).
        logging.getLogger("prefect.salesflow_test").info("hello %s", "there")
    finally:
        for name in ("prefect", "salesflow"):
            logging.getLogger(name).removeHandler(handler)
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert (last["logger"], last["message"]) == ("prefect.salesflow_test", "hello there")


def _record(msg: str, *args: object, name: str = "prefect.task_runs") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_the_filter_escapes_control_characters_of_the_message_and_its_args() -> None:
    record = _record("batch=%s stage=%s path=%s", "a\x1b[31m.csv", "load", Path("b\nc.csv"))

    assert EscapeControls().filter(record) is True  # escapes, never drops
    assert record.getMessage() == "batch=a\\x1b[31m.csv stage=load path=b\\nc.csv"


def test_the_filter_leaves_a_clean_record_and_a_repr_argument_as_they_are() -> None:
    clean = _record("batch=%s rows=%d", "año.csv", 3)
    quoted = _record("error=%r", "a\x1bb")

    EscapeControls().filter(clean)
    EscapeControls().filter(quoted)

    assert (clean.msg, clean.args) == ("batch=%s rows=%d", ("año.csv", 3))
    assert quoted.getMessage() == "error='a\\x1bb'"  # repr escaped it once; not twice


def test_the_filter_escapes_a_traceback_line_by_line() -> None:
    record = _record("failed")
    try:
        raise ValueError("bad \x1b[2J name")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()

    EscapeControls().filter(record)

    assert record.exc_text is not None
    assert record.exc_text.splitlines()[-1] == "ValueError: bad \\x1b[2J name"
    assert record.exc_text.startswith("Traceback (most recent call last):\n")


def test_escape_logs_covers_the_run_loggers_records_before_any_handler() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    escape_logs()
    logger = logging.getLogger("salesflow")
    keep = Keep()
    logger.addHandler(keep)
    try:
        logger.warning("file %s", "x\ny.csv")
    finally:
        logger.removeHandler(keep)
    assert seen == ["file x\\ny.csv"]
    for name in ("prefect", "salesflow", "prefect.flow_runs", "prefect.task_runs"):
        assert logging.getLogger(name).filters.count(ESCAPE_CONTROLS) == 1  # once, not per call


def test_json_logs_escape_records_of_child_loggers_too() -> None:
    stream = io.StringIO()
    handler = use_json_logs(stream)
    try:
        logging.getLogger("prefect.salesflow_test").info("name %s", "a\x1b[31mb")
    finally:
        for name in ("prefect", "salesflow"):
            logging.getLogger(name).removeHandler(handler)
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert last["message"] == "name a\\x1b[31mb"


@pytest.mark.e2e
def test_a_run_with_log_format_json_writes_only_json_lines_on_stderr(tmp_path: Path) -> None:
    day = write_csv(
        tmp_path / "landing" / "day.csv",
        CANONICAL_HEADER,
        "O1,2024-03-01T10:00:00,C1,S1,Kettle,Home,2,10.50,North",
        "O2,2024-03-01T11:00:00,C2,S2,Mug,Home,x,3.25,North",
    )

    result = run_salesflow(
        tmp_path,
        fresh_process_env(tmp_path / "home"),
        "--log-format",
        "json",
        "run",
        str(day),
        "--accept-rejects",
        "--warehouse",
        str(tmp_path / "w.duckdb"),
    )

    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    finished = [e for e in entries if e["message"].startswith("run finished")]
    assert len(finished) == 1 and finished[0]["flow_run_id"]
    loads = [e for e in entries if "stage=load" in e["message"]]
    assert loads and all(e.get("task_run_id") for e in loads)
    assert any(e["level"] == "WARNING" and "rejected=1" in e["message"] for e in entries)
    assert "1 loaded" in result.stdout  # the human summary stays on stdout
