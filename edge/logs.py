"""Process logs: one JSON object a line, with the component's name, and no secrets.

Every Glassbox process (supervisor, shard, relay, worker, API) logs through
:func:`configure_logging`. Extra fields given to a log call (``extra=``)
become keys of the line, so a decision's line carries the ``correlation_id``
of the tick that caused it. Passwords inside URLs are masked in every
message, whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LEVELS", "RedactSecrets", "configure_logging", "uvicorn_log_config"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RENAMED = {"asctime": "ts", "levelname": "level", "name": "logger"}
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Masks the password of any URL in a record's message (``redis://u:***@host``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _URL_PASSWORD.sub(r"\1***@", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _formatter(component: str) -> JsonFormatter:
    return JsonFormatter(_FORMAT, rename_fields=_RENAMED, static_fields={"component": component})


def configure_logging(component: str, level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send this process's logs to ``stream`` (stderr) as JSON lines tagged with ``component``."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_formatter(component))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))


def uvicorn_log_config(component: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``--log-config`` giving the same JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "edge.logs.RedactSecrets"}},
        "formatters": {"json": {
            "()": "pythonjsonlogger.json.JsonFormatter", "fmt": _FORMAT,
            "rename_fields": _RENAMED, "static_fields": {"component": component},
        }},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"],
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"handlers": ["stderr"], "level": level, "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
