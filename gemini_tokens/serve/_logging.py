"""The service's logs: JSON lines on stderr, one object per record (`JsonFormatter`)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (and its extras)."""

    _PLAIN = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "taskName",
    }

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        if message.startswith("{"):
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["message"] = message
        else:
            entry["message"] = message
        for key, value in vars(record).items():
            if key not in self._PLAIN and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging() -> None:
    """JSON lines on stderr at INFO for the library's loggers (the audit log included)."""
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("gemini_tokens")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
