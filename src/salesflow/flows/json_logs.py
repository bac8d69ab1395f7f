"""`--log-format json`: Prefect's and salesflow's log records on stderr as JSON lines.

Installing the handler needs Prefect's logging configured first, so it lives in the
orchestration layer; the formatting and escaping are `salesflow.logs`, free of Prefect.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from salesflow.logs import LOGGERS, JsonFormatter, escape_logs


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
    escape_logs(handler, *logging.getLogger().handlers)  # Prefect's console handler on the root
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    return handler
