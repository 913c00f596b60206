"""Type stubs for the Rust extension module ``scraperv4._core``.

Private: import the public names from :mod:`scraperv4` instead. Kept in step with
``src/python/`` by ``mypy.stubtest`` in ``make test``.
"""

from collections.abc import Iterable
from typing import Any, final

__version__: str

def set_log_level(level: str) -> None:
    """Set the ``scraperv4`` logger's level; ``ConfigError`` for an unknown level name."""

def _block_for(seconds: float) -> float:
    """Wait ``seconds`` on the Rust runtime with the GIL released; returns the time waited.

    Internal: exercises the sync bridge (GIL release, Ctrl-C) in the test-suite.
    """

async def _sleep_async(seconds: float) -> float:
    """Sleep ``seconds`` on the Rust runtime; returns the time slept.

    Internal: exercises the asyncio bridge (awaiting, cancellation) in the test-suite.
    """

def partition_lists(
    urls: Iterable[object],
    num_partitions: int,
    strategy: str = "domain_hash",
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[list[list[Any]], list[tuple[Any, str]]]:
    """Partition ``urls`` into lists; returns ``(partitions, [(invalid_url, reason), ...])``."""

def partition_indices(
    urls: Iterable[object],
    num_partitions: int,
    strategy: str = "domain_hash",
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[bytes, list[tuple[Any, str]]]:
    """Partition index per URL as native int32 bytes (``-1`` = invalid), and the invalid ones."""

def optimize_partitions(
    partitions: list[Iterable[object]],
    tolerance: float = 0.1,
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[list[list[Any]], dict[str, Any], list[tuple[Any, str]]]:
    """Rebalance partitions by moving whole domains; returns ``(partitions, report, invalid)``."""

@final
class ResourceManager:
    """Background sampler of this machine's (or container's) resources."""

    def __new__(
        cls,
        thresholds: list[tuple[str, float]] | None = None,
        *,
        disk_path: str | None = None,
        sample_interval: float = 1.0,
        history_size: int = 600,
        cores_per_worker: float = 2.0,
        memory_per_worker_mb: float = 512.0,
        jobs_per_worker: int = 5,
        min_workers: int = 1,
        max_workers: int | None = None,
        cgroup_root: str | None = None,
        cgroup_membership: str | None = None,
    ) -> ResourceManager: ...
    @property
    def thresholds(self) -> dict[str, float]:
        """The thresholds in use, by their seed names."""
    def check(self) -> dict[str, Any]:
        """The latest reading plus ``can_scale_up`` and ``limiting_factors``."""
    def optimal_worker_count(self, current_workers: int, pending_jobs: int) -> int:
        """The seed's optimal worker count for this machine and backlog."""
    def history_columns(self) -> dict[str, bytes]:
        """The history as columns of native-endian float64 bytes, oldest first."""
    def close(self) -> None:
        """Stop the sampler thread."""
