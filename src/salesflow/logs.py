"""Logs: control characters escaped in every record, and machine-readable output.

`--log-format json` writes every Prefect and salesflow log record as one JSON object per line on
stderr (`JsonFormatter`, installed by `flows.json_logs.use_json_logs`), alongside the logs
Prefect keeps in its API. A log shipper (Vector, Fluent Bit, a CloudWatch agent) can then index
the run's records by `flow_run_id`, `task_run_id`, level and logger without parsing text.

Whatever the format, `escape_logs` makes each record's message printable (see salesflow.text):
a file name holding an ANSI escape or a newline cannot recolour a terminal or forge a log line,
on the console, in the JSON lines or in the logs Prefect's API and UI keep.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

from salesflow.text import printable

# Attributes Prefect's run loggers put on each record (see prefect.logging.loggers).
RUN_FIELDS: Final = ("flow_run_id", "flow_run_name", "flow_name", "task_run_id", "task_run_name")
LOGGERS: Final = ("prefect", "salesflow")
# A logger's filters see only the records logged on it, not those its children pass up, so the
# loggers that carry run logs (file names among them) are named too.
RUN_LOGGERS: Final = ("prefect.flow_runs", "prefect.task_runs", "prefect.extra")


class EscapeControls(logging.Filter):
    """Rewrite a record whose message holds control characters with the escaped message.

    The message is escaped after formatting (template and args together), so an argument of any
    type (a Path, an exception) is covered, and a `%r` argument, already escaped by repr, is not
    escaped twice. A record without control characters keeps its template and args. A
    traceback keeps its lines, each escaped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: left for the handler to report, as usual
            return True
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, ()
        if record.exc_info and not record.exc_text:
            lines = logging.Formatter().formatException(record.exc_info).splitlines()
            record.exc_text = "\n".join(printable(line) for line in lines)
        return True


ESCAPE_CONTROLS: Final = EscapeControls()


def escape_logs(*handlers: logging.Handler) -> None:
    """Escape the records of Prefect's and salesflow's loggers (and their run loggers), and
    every record `handlers` emit, whatever logger it comes from. Safe to call again."""
    for name in (*LOGGERS, *RUN_LOGGERS):
        logging.getLogger(name).addFilter(ESCAPE_CONTROLS)
    for handler in handlers:
        handler.addFilter(ESCAPE_CONTROLS)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, run ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in RUN_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = str(value)
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
