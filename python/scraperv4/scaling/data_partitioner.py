"""The scaling guide's ``DataPartitioner``, backed by :mod:`scraperv4.partition`.

Differences from the seed, on purpose:

- an unknown strategy raises :class:`~scraperv4.exceptions.ConfigError` (the seed silently
  used round robin);
- ``domain_hash`` is consistent hashing (the seed's ``md5 % n`` re-shuffled almost every
  domain when ``n`` changed) and groups by registrable domain unless ``grouping="host"``;
- invalid URLs are not mixed into partition 0: they are in ``.invalid`` with their reason;
- ``optimize_partitions`` keeps each domain whole (the seed re-dealt every URL round robin).

The return values are still plain lists of lists (list subclasses with extra attributes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from scraperv4.partition import OptimizedPartitions, Partitioner, Partitions

__all__ = ["DataPartitioner"]


class DataPartitioner:
    """Partition scraping tasks across workers (seed-compatible)."""

    def __init__(
        self, partition_strategy: str = "domain_hash", grouping: str = "registrable_domain"
    ) -> None:
        self.partition_strategy = partition_strategy
        self._partitioner = Partitioner(partition_strategy, grouping)

    def partition_urls(
        self,
        urls: list[str],
        num_partitions: int,
        weights: Optional[Sequence[float]] = None,
    ) -> Partitions:
        """Partition ``urls`` into ``num_partitions`` groups (see :class:`Partitioner`)."""
        return self._partitioner.partition(urls, num_partitions, weights)

    def optimize_partitions(
        self, partitions: list[list[str]], tolerance: float = 0.1
    ) -> OptimizedPartitions:
        """Rebalance ``partitions``, keeping domains whole (see :meth:`Partitioner.optimize`)."""
        return self._partitioner.optimize(partitions, tolerance)
