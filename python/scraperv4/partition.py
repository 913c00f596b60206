"""Split URLs among workers: consistent, balanced, domain-aware.

>>> from scraperv4.partition import Partitioner
>>> parts = Partitioner("domain_grouping").partition(
...     ["https://a.example.com/1", "https://b.example.com/2", "https://other.org/", "bad"], 2
... )
>>> [len(p) for p in parts]
[2, 1]
>>> parts.invalid
[('bad', 'not a valid URL: relative URL without a base')]

Strategies:

``domain_hash`` (default)
    Each domain goes to a partition chosen by weighted rendezvous hashing. Deterministic
    across processes and machines; growing from n to n+1 partitions moves only about
    1/(n+1) of the domains, all of them to the new partition.
``round_robin``
    URLs dealt in turn (in proportion to the weights), ignoring domains.
``domain_grouping``
    Whole domains, largest first, onto the partition with the lowest load for its weight.

URLs are grouped by their registrable domain by default (``shop.example.co.uk`` and
``www.example.co.uk`` are both ``example.co.uk``, from the public suffix list); pass
``grouping="host"`` to group by exact host name. A URL that is not a valid ``http``/``https``
URL with a host is never dropped: it is left out of the partitions and listed in
``.invalid`` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from scraperv4 import _core

__all__ = ["STRATEGIES", "OptimizedPartitions", "Partitioner", "Partitions"]

#: The strategy names :class:`Partitioner` accepts.
STRATEGIES = ("domain_hash", "round_robin", "domain_grouping")


class Partitions(list):  # type: ignore[type-arg]
    """The partitions (a ``list`` of ``list`` of URLs), plus the URLs that could not be placed.

    Attributes:
        invalid: ``(url, reason)`` for every input item that is not a valid http(s) URL.
    """

    invalid: list[tuple[Any, str]]

    def __init__(self, partitions: Iterable[list[str]], invalid: list[tuple[Any, str]]) -> None:
        super().__init__(partitions)
        self.invalid = invalid


class OptimizedPartitions(Partitions):
    """Rebalanced partitions, with what the rebalancing achieved.

    Attributes:
        balanced: every partition is within ``tolerance`` of its fair share.
        max_load_ratio: the largest ``size / fair share`` (1.0 is perfect balance).
        tolerance: the tolerance that was asked for.
        moved_domains: how many domains changed partition.
        oversized_domains: ``(domain, url_count)`` for each domain that alone is larger than
            ``(1 + tolerance)`` times a fair share: it is kept whole, so balance within the
            tolerance was not possible.
    """

    def __init__(
        self,
        partitions: Iterable[list[str]],
        invalid: list[tuple[Any, str]],
        report: dict[str, Any],
    ) -> None:
        super().__init__(partitions, invalid)
        self.balanced: bool = report["balanced"]
        self.max_load_ratio: float = report["max_load_ratio"]
        self.tolerance: float = report["tolerance"]
        self.moved_domains: int = report["moved_domains"]
        self.oversized_domains: list[tuple[str, int]] = report["oversized_domains"]


class Partitioner:
    """Assigns URLs to partitions (one per worker).

    Args:
        strategy: ``domain_hash`` (default), ``round_robin`` or ``domain_grouping``.
        grouping: ``registrable_domain`` (default) or ``host``: what keeps URLs together.

    Raises:
        ConfigError: an unknown strategy or grouping.
    """

    def __init__(self, strategy: str = "domain_hash", grouping: str = "registrable_domain") -> None:
        # Validated now, not at the first call, so a typo fails where it was made.
        _core.partition_indices([], 1, strategy, grouping)
        self.strategy = strategy
        self.grouping = grouping

    def __repr__(self) -> str:
        return f"Partitioner(strategy={self.strategy!r}, grouping={self.grouping!r})"

    def partition(
        self,
        urls: Iterable[str],
        num_partitions: int,
        weights: Optional[Sequence[float]] = None,
    ) -> Partitions:
        """Split ``urls`` into ``num_partitions`` lists, keeping the input order in each.

        Args:
            urls: the URLs (any iterable of ``str``).
            num_partitions: how many partitions (>= 1).
            weights: relative capacity of each partition (a worker with weight 2 gets twice
                the share); default equal.

        Raises:
            ConfigError: ``num_partitions`` < 1, or weights of the wrong length or <= 0.
        """
        lists, invalid = _core.partition_lists(
            urls, num_partitions, self.strategy, self.grouping, _weights(weights)
        )
        return Partitions(lists, invalid)

    def partition_indices(
        self,
        urls: Iterable[str],
        num_partitions: int,
        weights: Optional[Sequence[float]] = None,
    ) -> npt.NDArray[np.int32]:
        """The partition of each URL as an ``int32`` array (``-1`` for an invalid URL).

        Same assignment as :meth:`partition`; convenient in notebooks (``np.bincount``,
        pandas columns). The work runs without the GIL.
        """
        raw, _invalid = _core.partition_indices(
            urls, num_partitions, self.strategy, self.grouping, _weights(weights)
        )
        return np.frombuffer(raw, dtype=np.int32).copy()

    def optimize(
        self,
        partitions: Sequence[Iterable[str]],
        tolerance: float = 0.1,
        weights: Optional[Sequence[float]] = None,
    ) -> OptimizedPartitions:
        """Rebalance existing partitions without splitting any domain.

        A domain spread over several partitions is first gathered where most of it already
        is; then whole domains move from overloaded to underloaded partitions until each is
        within ``tolerance`` (a fraction: 0.1 = 10 %) of its fair share. Domains too big for
        that are listed in ``oversized_domains``.
        """
        lists, report, invalid = _core.optimize_partitions(
            list(partitions), tolerance, self.grouping, _weights(weights)
        )
        return OptimizedPartitions(lists, invalid, report)


def _weights(weights: Optional[Sequence[float]]) -> Optional[list[float]]:
    return None if weights is None else [float(w) for w in weights]
