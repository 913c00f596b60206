"""ScraperV4 Scale: distributed web scraping with a Rust core.

Run scraping jobs on one machine (embedded queue) or on a fleet of workers sharing Redis.
The seed-compatible API lives in :mod:`scraperv4.scaling`; errors in
:mod:`scraperv4.exceptions`.
"""

from __future__ import annotations

from scraperv4 import _core
from scraperv4._logging import LOG_LEVEL_ENV, apply_environment, set_log_level
from scraperv4.exceptions import (
    ConfigError,
    FetchError,
    QueueError,
    ScraperV4Error,
    TemplateError,
)
from scraperv4.worker import Worker

__version__: str = _core.__version__

__all__ = [
    "LOG_LEVEL_ENV",
    "ConfigError",
    "FetchError",
    "QueueError",
    "ScraperV4Error",
    "TemplateError",
    "Worker",
    "__version__",
    "set_log_level",
]

apply_environment()
