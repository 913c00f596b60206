"""Partitioning 1,000,000 URLs over 10,000 domains into 16 partitions.

Peer: the scaling guide's ``DataPartitioner._partition_by_domain_hash`` (pure Python, one
``urlparse`` and one md5 per URL), measured in the same run. Goal: >= 20x faster.
"""

from __future__ import annotations

import hashlib
import random
import sys
from urllib.parse import urlparse

from _common import best_of, report
from scraperv4.partition import Partitioner

URLS, DOMAINS, PARTITIONS = 1_000_000, 10_000, 16


def seed_domain_hash(urls: list[str], num_partitions: int) -> list[list[str]]:
    """The scaling guide's code, verbatim in behaviour."""
    partitions: list[list[str]] = [[] for _ in range(num_partitions)]
    for url in urls:
        try:
            domain = urlparse(url).netloc
            hash_value = int(hashlib.md5(domain.encode()).hexdigest(), 16)  # noqa: S324
            partitions[hash_value % num_partitions].append(url)
        except Exception:
            partitions[len(partitions[0]) % num_partitions].append(url)
    return partitions


def main() -> int:
    rng = random.Random(42)
    tlds = ["com", "org", "net", "co.uk", "de", "io"]
    domains = [f"shop{i}.example{i % 977}.{tlds[i % len(tlds)]}" for i in range(DOMAINS)]
    urls = [
        f"https://{rng.choice(domains)}/products/{i}?page={i % 40}&ref=bench" for i in range(URLS)
    ]
    partitioner = Partitioner("domain_hash")

    seed_s = best_of(2, lambda: seed_domain_hash(urls, PARTITIONS))
    lists_s = best_of(5, lambda: partitioner.partition(urls, PARTITIONS))
    numpy_s = best_of(5, lambda: partitioner.partition_indices(urls, PARTITIONS))
    grouping_s = best_of(3, lambda: Partitioner("domain_grouping").partition(urls, PARTITIONS))

    met = report(
        "partition",
        {
            "urls": URLS,
            "domains": DOMAINS,
            "partitions": PARTITIONS,
            "seed md5 domain_hash (s)": seed_s,
            "scraperv4 domain_hash -> lists (s)": lists_s,
            "scraperv4 domain_hash -> numpy (s)": numpy_s,
            "scraperv4 domain_grouping -> lists (s)": grouping_s,
            "scraperv4 lists URLs/s": URLS / lists_s,
            "scraperv4 numpy URLs/s": URLS / numpy_s,
        },
        {
            "lists vs seed": (seed_s / lists_s, 20.0),
            "numpy vs seed": (seed_s / numpy_s, 20.0),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
