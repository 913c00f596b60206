"""URL partitioning: every URL placed once, consistent, balanced, weighted, deterministic."""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scraperv4.exceptions import ConfigError
from scraperv4.partition import STRATEGIES, Partitioner
from scraperv4.scaling.data_partitioner import DataPartitioner

domains = st.sampled_from(
    ["a.com", "b.org", "shop.example.co.uk", "www.example.co.uk", "x.io", "127.0.0.1:8000"]
)
urls_strategy = st.lists(
    st.one_of(
        st.builds(lambda d, p: f"https://{d}/{p}", domains, st.integers(0, 50)),
        st.text(max_size=12),  # mostly invalid URLs
    ),
    max_size=80,
)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


@settings(max_examples=150, deadline=None)
@given(urls=urls_strategy, n=st.integers(1, 7), strategy=st.sampled_from(STRATEGIES))
def test_every_url_lands_in_exactly_one_place(urls: list[str], n: int, strategy: str) -> None:
    parts = Partitioner(strategy).partition(urls, n)
    assert len(parts) == n
    placed = [url for part in parts for url in part] + [url for url, _ in parts.invalid]
    assert collections.Counter(placed) == collections.Counter(urls)
    # The array form says the same.
    indices = Partitioner(strategy).partition_indices(urls, n)
    assert indices.dtype == np.int32
    assert indices.shape == (len(urls),)
    # ... and each partition is the input's URLs with that index, in input order.
    for p, part in enumerate(parts):
        assert part == [url for url, index in zip(urls, indices) if index == p]
    assert [url for url, _ in parts.invalid] == [u for u, i in zip(urls, indices) if i == -1]


def test_invalid_urls_come_back_with_their_reason() -> None:
    parts = Partitioner().partition(
        ["https://ok.com/", "ftp://x.com/f", "no scheme", "http://", None, 7], 2
    )
    assert sum(map(len, parts)) == 1
    reasons = {repr(url): reason for url, reason in parts.invalid}
    assert "unsupported scheme" in reasons["'ftp://x.com/f'"]
    assert "not a valid URL" in reasons["'no scheme'"]
    assert "not a valid URL" in reasons["'http://'"]
    assert reasons["None"] == "not a string (got NoneType)"
    assert reasons["7"] == "not a string (got int)"


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="partition strategy"):
        DataPartitioner("random")
    with pytest.raises(ConfigError, match="grouping"):
        Partitioner(grouping="tld")
    with pytest.raises(ConfigError, match="num_partitions"):
        Partitioner().partition(["https://a.com/"], 0)
    with pytest.raises(ConfigError, match="weights"):
        Partitioner().partition(["https://a.com/"], 2, weights=[1, -1])
    with pytest.raises(ConfigError, match="tolerance"):
        Partitioner().optimize([["https://a.com/"]], tolerance=-1)


def test_registrable_domain_keeps_subdomains_together_and_host_does_not() -> None:
    urls = [f"https://{sub}.example.co.uk/{i}" for i in range(40) for sub in ("shop", "www")]
    by_domain = Partitioner("domain_hash").partition(urls, 16)
    assert sorted(len(p) for p in by_domain if p) == [80]
    by_host = Partitioner("domain_grouping", grouping="host").partition(urls, 2)
    assert sorted(len(p) for p in by_host) == [40, 40]
    assert {host_of(u) for u in by_host[0]} != {host_of(u) for u in by_host[1]}


def test_growing_the_fleet_moves_about_one_share_of_domains() -> None:
    urls = [f"https://site{i}.example.com/" for i in range(10_000)]
    partitioner = Partitioner("domain_hash", grouping="host")
    for n in (4, 8, 15):
        before = partitioner.partition_indices(urls, n)
        after = partitioner.partition_indices(urls, n + 1)
        moved = before != after
        share = moved.mean()
        assert abs(share - 1 / (n + 1)) < 0.25 / (n + 1), (n, share)
        assert set(after[moved].tolist()) == {n}, "domains moved only to the new partition"
    # The seed's md5 % n, for contrast, moves most domains (documented in the module).


def test_results_are_identical_in_another_process() -> None:
    script = textwrap.dedent(
        """
        from scraperv4.partition import Partitioner
        urls = [f"https://d{i}.example.org/p" for i in range(2000)]
        print(",".join(map(str, Partitioner().partition_indices(urls, 9).tolist())))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    urls = [f"https://d{i}.example.org/p" for i in range(2000)]
    here = Partitioner().partition_indices(urls, 9).tolist()
    assert done.stdout.strip() == ",".join(map(str, here))


def _skewed_urls(rng: np.random.Generator, domains: int) -> list[str]:
    sizes = rng.integers(1, 30, size=domains)
    return [f"https://d{d}.net/{i}" for d, size in enumerate(sizes) for i in range(size)]


def test_domain_grouping_balances_by_size_and_keeps_domains_whole() -> None:
    urls = _skewed_urls(np.random.default_rng(1), 600)
    parts = Partitioner("domain_grouping").partition(urls, 8)
    fair = len(urls) / 8
    assert max(map(len, parts)) <= fair * 1.02
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for url in part:
            assert owner.setdefault(host_of(url), index) == index


def test_weights_are_respected() -> None:
    urls = [f"https://w{i}.com/" for i in range(30_000)]
    weights = [1.0, 2.0, 1.0]
    for strategy in STRATEGIES:
        sizes = [len(p) for p in Partitioner(strategy).partition(urls, 3, weights=weights)]
        assert abs(sizes[1] / (sizes[0] + sizes[2]) - 1.0) < 0.06, (strategy, sizes)


def test_optimize_rebalances_within_tolerance_without_splitting_domains() -> None:
    urls = _skewed_urls(np.random.default_rng(2), 400)
    # Round robin spreads every domain everywhere and leaves partitions unequal in domains.
    unbalanced = [urls[: len(urls) // 2], urls[len(urls) // 2 :], []]
    result = Partitioner().optimize(unbalanced, tolerance=0.05)
    assert result.balanced, result.max_load_ratio
    assert result.max_load_ratio <= 1.05
    assert result.oversized_domains == []
    assert sorted(u for p in result for u in p) == sorted(urls)
    owner: dict[str, int] = {}
    for index, part in enumerate(result):
        for url in part:
            assert owner.setdefault(host_of(url), index) == index


def test_optimize_reports_a_domain_bigger_than_a_fair_share() -> None:
    big = [f"https://huge.com/{i}" for i in range(300)]
    small = [f"https://s{i}.com/" for i in range(60)]
    result = DataPartitioner().optimize_partitions([big + small[:30], small[30:], []])
    assert not result.balanced
    assert result.oversized_domains == [("huge.com", 300)]
    assert any(part == big for part in result), "the big domain stays whole, alone"


def test_the_seed_example_runs_unchanged() -> None:
    partitioner = DataPartitioner("domain_hash")
    urls = [
        "https://site1.com/page1",
        "https://site1.com/page2",
        "https://site2.com/page1",
        "https://site3.com/page1",
    ]
    partitions = partitioner.partition_urls(urls, 3)
    assert len(partitions) == 3
    assert isinstance(partitions, list)
    assert all(isinstance(p, list) for p in partitions)
    assert sum(len(p) for p in partitions) == 4
    site1 = next(p for p in partitions if "https://site1.com/page1" in p)
    assert "https://site1.com/page2" in site1


def test_partitions_hold_the_callers_own_objects_and_odd_text_is_invalid() -> None:
    # Built at run time, so none is interned or shared with another.
    urls = [f"https://site{i % 5}.example/{i}" for i in range(200)]
    odd = ["https://bücher.de/ä", "https://a.com/\udc80", None, b"https://b.com/"]
    parts = Partitioner().partition(urls + odd, 3)
    ids = {id(url) for url in urls}
    placed = [url for part in parts for url in part]
    assert sorted(map(id, placed)) == sorted(ids | {id(odd[0])})
    invalid = {repr(url): reason for url, reason in parts.invalid}
    assert invalid["'https://a.com/\\udc80'"] == "not encodable as UTF-8"
    assert invalid["None"] == "not a string (got NoneType)"
    assert invalid["b'https://b.com/'"] == "not a string (got bytes)"
    assert [url for url, _ in parts.invalid] == odd[1:]
    # optimize keeps invalid items (as units of one) in the partitions, as they were given.
    result = Partitioner().optimize([[*urls[:100], None], urls[100:]])
    assert sum(map(len, result)) == 201
    assert any(item is None for part in result for item in part)
    assert [reason for _, reason in result.invalid] == ["not a string (got NoneType)"]
