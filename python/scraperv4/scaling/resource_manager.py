"""The scaling guide's ``ResourceManager``, backed by :mod:`scraperv4.resources`.

Differences from the seed, on purpose: readings come from a background sampler (the seed
blocked every call for one second in ``psutil.cpu_percent(interval=1)``); inside a container
the limits are the cgroup's (the seed read the host's totals and over-committed); the disk
checked is configurable; bad thresholds raise :class:`~scraperv4.exceptions.ConfigError`.
"""

from scraperv4.resources import DEFAULT_THRESHOLDS, ResourceManager

__all__ = ["DEFAULT_THRESHOLDS", "ResourceManager"]
