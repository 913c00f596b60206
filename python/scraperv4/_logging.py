"""Log level of the ``scraperv4`` logger, from the environment or from code.

The Rust core logs through Python's :mod:`logging` (logger ``scraperv4`` and its children
``scraperv4.<module>``). Like any library, scraperv4 adds no handler: configure logging in
your application (``logging.basicConfig()``), or use the CLI, which does it for you.
"""

from __future__ import annotations

import os

from scraperv4 import _core

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
    """Apply ``SCRAPERV4_LOG_LEVEL`` if it is set (called once at import)."""
    level = os.environ.get(LOG_LEVEL_ENV)
    if level:
        set_log_level(level)
