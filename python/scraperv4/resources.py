"""What this machine — or this container — can still take: CPU, memory, disk and load.

A :class:`ResourceManager` samples in a background thread (every ``sample_interval``
seconds), so its methods return at once: the first call waits once for the first reading
(about 0.2 s after creation), and never again. Inside a cgroup with a CPU quota or a memory
limit (Docker, Kubernetes), the cores, the memory total and the usage percentages are the
container's, not the host's.

>>> from scraperv4.resources import ResourceManager
>>> manager = ResourceManager({"cpu_max": 90}, disk_path="/")
>>> status = manager.check_resource_availability()
>>> sorted(k for k in status if k in {"cpu_usage", "can_scale_up"})
['can_scale_up', 'cpu_usage']
>>> manager.close()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from scraperv4 import _core

__all__ = ["DEFAULT_THRESHOLDS", "ResourceManager"]

#: The scaling guide's thresholds: percentages, and a one-minute load average.
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "cpu_max": 80.0,
    "memory_max": 85.0,
    "disk_max": 90.0,
    "load_max": 4.0,
}


class ResourceManager:
    """Watches resources and says whether (and how far) this machine can scale up.

    Args:
        thresholds: any of ``cpu_max``, ``memory_max``, ``disk_max`` (percent, in (0, 100])
            and ``load_max``; missing ones keep :data:`DEFAULT_THRESHOLDS`.
        disk_path: the path whose filesystem is checked, e.g. the results folder.
        sample_interval: seconds between readings (>= 0.2).
        history_size: readings kept for :meth:`history`.
        cores_per_worker: CPU cores one worker needs (seed: 2).
        memory_per_worker_mb: memory one worker needs, MiB (seed: 512).
        jobs_per_worker: pending jobs one worker absorbs (seed: 5).
        min_workers: lower bound of :meth:`get_optimal_worker_count`.
        max_workers: upper bound of :meth:`get_optimal_worker_count` (default: none).

    Raises:
        ConfigError: an unknown threshold, a negative or over-100 % threshold,
            ``min_workers > max_workers``, a non-existent ``disk_path``, ...
    """

    def __init__(
        self,
        thresholds: Optional[Mapping[str, float]] = None,
        *,
        disk_path: Union[str, os.PathLike[str]] = "/",
        sample_interval: float = 1.0,
        history_size: int = 600,
        cores_per_worker: float = 2.0,
        memory_per_worker_mb: float = 512.0,
        jobs_per_worker: int = 5,
        min_workers: int = 1,
        max_workers: Optional[int] = None,
        _cgroup_root: Optional[str] = None,
        _cgroup_membership: Optional[str] = None,
    ) -> None:
        self._inner = _core.ResourceManager(
            [(str(k), float(v)) for k, v in (thresholds or {}).items()],
            disk_path=os.fspath(disk_path),
            sample_interval=sample_interval,
            history_size=history_size,
            cores_per_worker=cores_per_worker,
            memory_per_worker_mb=memory_per_worker_mb,
            jobs_per_worker=jobs_per_worker,
            min_workers=min_workers,
            max_workers=max_workers,
            cgroup_root=_cgroup_root,
            cgroup_membership=_cgroup_membership,
        )

    @property
    def resource_thresholds(self) -> dict[str, float]:
        """The thresholds in use (the seed's attribute)."""
        return self._inner.thresholds

    def check_resource_availability(self) -> dict[str, Any]:
        """The latest reading, and whether the machine can take more workers.

        Returns the seed's keys — ``cpu_usage``, ``memory_usage``, ``disk_usage`` (percent),
        ``load_average``, ``can_scale_up``, ``limiting_factors`` (one sentence per exceeded
        threshold) — plus ``cpu_cores``, ``memory_total_bytes``, ``memory_available_bytes``,
        ``disk_free_bytes``, ``timestamp`` and ``limits_source`` (``host``, ``cgroup v1``
        or ``cgroup v2``).
        """
        return self._inner.check()

    def get_optimal_worker_count(self, current_workers: int, pending_jobs: int) -> int:
        """How many workers this machine should run for ``pending_jobs`` (the seed's rule).

        Keeps ``current_workers`` while any threshold is exceeded; otherwise the smallest of
        what the CPUs fit (``cores // cores_per_worker``), what the available memory fits
        (``available // memory_per_worker``) and what the backlog needs
        (``pending_jobs // jobs_per_worker + 1``), within ``[min_workers, max_workers]``.
        """
        return self._inner.optimal_worker_count(current_workers, pending_jobs)

    def history(self) -> dict[str, npt.NDArray[np.float64]]:
        """The readings so far, oldest first, one ``float64`` array per column.

        Columns: ``timestamp`` (Unix seconds), ``cpu_usage``, ``memory_usage``,
        ``disk_usage``, ``load_average``. ``pandas.DataFrame(manager.history())`` works.
        """
        return {
            name: np.frombuffer(raw, dtype=np.float64).copy()
            for name, raw in self._inner.history_columns().items()
        }

    def close(self) -> None:
        """Stop the sampler thread (readings taken so far stay available)."""
        self._inner.close()

    def __enter__(self) -> ResourceManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
