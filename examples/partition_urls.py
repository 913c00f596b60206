"""Split a URL list among workers of different sizes, then rebalance after a change.

Run: .venv/bin/python examples/partition_urls.py
"""

from __future__ import annotations

import numpy as np

from scraperv4.partition import Partitioner

# 50 sites of different sizes (site d has d + 1 pages).
urls = [f"https://www.shop{d}.example/item/{i}" for d in range(50) for i in range(d + 1)]
urls += ["not a url", "ftp://files.example.com/a"]

partitioner = Partitioner("domain_grouping")
parts = partitioner.partition(urls, 3, weights=[1, 1, 2])  # the third worker is twice as big
print("sizes:", [len(p) for p in parts])
print("invalid:", parts.invalid)

indices = partitioner.partition_indices(urls, 3, weights=[1, 1, 2])
print("per partition (numpy):", np.bincount(indices[indices >= 0]))

# A worker left: merge its share into the others and rebalance without splitting domains.
merged = [parts[0] + parts[2], parts[1]]
balanced = partitioner.optimize(merged, tolerance=0.05)
print("after optimize:", [len(p) for p in balanced], "balanced:", balanced.balanced)
