"""Log level of the ``scraperv4`` logger, from the environment or from code.

The Rust core logs through Python's :mod:`logging` (logger ``scraperv4`` and its children
``scraperv4.<module>``). Like any library, scraperv4 adds no handler: configure logging in
your application (``logging.basicConfig()``), or use the CLI, which does it for you.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any

from scraperv4 import _core
from scraperv4.exceptions import ConfigError

#: Environment variable read at import time to set the level (``debug``, ``info``, ...).
LOG_LEVEL_ENV = "SCRAPERV4_LOG_LEVEL"


def set_log_level(level: str) -> None:
    """Set the level of the ``scraperv4`` logger, Rust events included.

    Args:
        level: ``trace``, ``debug``, ``info``, ``warning``, ``error`` or ``off``
            (case-insensitive).

    Raises:
        ConfigError: ``level`` is not one of those names.
    """
    _core.set_log_level(level)


def apply_environment() -> None:
    """Apply ``SCRAPERV4_LOG_LEVEL`` if it is set (called once at import). A value that is
    not a level is reported on the ``scraperv4`` logger and ignored: importing the package
    never fails because of the environment (the CLI refuses it with exit code 2)."""
    level = os.environ.get(LOG_LEVEL_ENV)
    if not level:
        return
    try:
        set_log_level(level)
    except ConfigError:
        logging.getLogger("scraperv4").warning(
            "%s=%r is not a log level (trace, debug, info, warning, error or off): ignored",
            LOG_LEVEL_ENV,
            level,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` and, for an exception, ``exception``: what log collectors (Loki, Cloud
    Logging, Elasticsearch) read without parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_cli(log_format: str = "text") -> None:
    """The command line's logging: records on stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
