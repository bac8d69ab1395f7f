"""Machine-readable logs: `--log-format json` writes every Prefect and salesflow log record as
one JSON object per line on stderr, alongside the logs Prefect keeps in its API.

A log shipper (Vector, Fluent Bit, a CloudWatch agent) can then index the run's records by
`flow_run_id`, `task_run_id`, level and logger without parsing text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Final

# Attributes Prefect's run loggers put on each record (see prefect.logging.loggers).
RUN_FIELDS: Final = ("flow_run_id", "flow_run_name", "flow_name", "task_run_id", "task_run_name")
LOGGERS: Final = ("prefect", "salesflow")


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
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_logs(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send Prefect's and salesflow's log records to `stream` (stderr) as JSON lines.

    Prefect configures its loggers once, on first import of its main module, replacing the
    handlers of the loggers it names ("prefect" among them); later setups are incremental. So
    that runs first, and the handler is added after it, not wiped by it.
    """
    import prefect.main  # noqa: F401  (configures Prefect's logging)

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    return handler
