"""Partitioning 1,000,000 URLs over 10,000 domains into 16 partitions.

Peer: the scaling guide's ``DataPartitioner._partition_by_domain_hash`` (pure Python, one
``urlparse`` and one md5 per URL). Ours is measured through the guide's API
(``scraperv4.scaling.DataPartitioner("domain_hash").partition_urls``) and the native one
(``Partitioner.partition_indices``), interleaved with the peer in one process (peer, guide
API, native, peer, ...), the ratio taken within each round. Goal (issue #20): the guide's
API >= 40x the peer (about 0.12 s).

    .venv/bin/python benches/bench_partition.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from urllib.parse import urlparse

from _common import report
from _interleave import load, measure, median, ratios, spread
from scraperv4.partition import Partitioner
from scraperv4.scaling.data_partitioner import DataPartitioner

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(42)
    tlds = ["com", "org", "net", "co.uk", "de", "io"]
    domains = [f"shop{i}.example{i % 977}.{tlds[i % len(tlds)]}" for i in range(DOMAINS)]
    urls = [
        f"https://{rng.choice(domains)}/products/{i}?page={i % 40}&ref=bench" for i in range(URLS)
    ]
    guide = DataPartitioner("domain_hash")
    native = Partitioner("domain_hash")
    parts = guide.partition_urls(urls, PARTITIONS)
    assert sum(map(len, parts)) == URLS
    assert not parts.invalid

    load_before = load()
    timings = measure(
        {
            "peer": lambda: seed_domain_hash(urls, PARTITIONS),
            "guide": lambda: guide.partition_urls(urls, PARTITIONS),
            "native": lambda: native.partition_indices(urls, PARTITIONS),
        },
        args.rounds,
    )
    started = time.perf_counter()
    Partitioner("domain_grouping").partition(urls, PARTITIONS)
    grouping_s = time.perf_counter() - started

    peer, ours, indices = (timings[name]["wall"] for name in ("peer", "guide", "native"))
    guide_ratio = ratios(peer, ours)
    native_ratio = ratios(peer, indices)
    # CPU time is less disturbed by other work on the machine than wall time.
    cpu_ratio = ratios(timings["peer"]["cpu"], timings["guide"]["cpu"])
    met = report(
        "partition",
        {
            "urls / domains / partitions": f"{URLS:,} / {DOMAINS:,} / {PARTITIONS}",
            "rounds (interleaved peer, guide, native)": args.rounds,
            "load average before / after": f"{load_before} / {load()}",
            "peer: guide's md5 domain_hash, s": spread(peer),
            "peer: same, CPU s": spread(timings["peer"]["cpu"]),
            "ours: DataPartitioner.partition_urls, s": spread(ours),
            "ours: same, CPU s": spread(timings["guide"]["cpu"]),
            "ours: Partitioner.partition_indices, s": spread(indices),
            "ratio guide API (peer / ours), per round": spread(guide_ratio, 1),
            "ratio partition_indices, per round": spread(native_ratio, 1),
            "ratio guide API by CPU time, per round": spread(cpu_ratio, 1),
            "ours: domain_grouping -> lists (s, once)": grouping_s,
            "ours: URLs/s (median)": f"{URLS / median(ours):,.0f}",
        },
        {
            "guide API vs guide md5 (median)": (median(guide_ratio), 40.0),
            "partition_indices vs guide md5 (median)": (median(native_ratio), 40.0),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
