"""The seen-URL filter through the Python API, on every backend: the options reach the queue,
canonical duplicates are queued once, and bad dedup settings are refused with typed errors
(the semantics in depth, and the 1 M false-positive test, are in tests/queue_dedup.rs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scraperv4.exceptions import ConfigError, InvalidJobError
from scraperv4.queue import JobQueue, JobSpec
from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
def url(request: pytest.FixtureRequest, shared_redis: RedisServer, tmp_path: Path) -> str:
    if request.param == "redis":
        return shared_redis.url
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("shared_cluster")
        return cluster.url
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'queue.db'}"
    return "memory://"


def test_canonical_duplicates_are_queued_once(url: str) -> None:
    queue = JobQueue(url, name=f"d{uuid.uuid4().hex[:8]}", dedup=True)
    specs = [
        JobSpec("https://shop.example/p?b=2&a=1", crawl_id="c"),
        JobSpec("https://SHOP.example:443/p?a=1&b=2#top", crawl_id="c"),
        JobSpec("https://shop.example/p?a=1&b=2&utm_source=x&fbclid=y", crawl_id="c"),
        JobSpec("https://shop.example/p?a=1&b=2&ref=z", crawl_id="c"),
    ]
    assert queue.submit_batch(specs).created == [True, False, False, True]
    # Without dedup, ids alone decide (the default): every spec is a job of its own.
    plain = JobQueue(url, name=f"p{uuid.uuid4().hex[:8]}")
    assert plain.submit_batch(specs).created == [True, True, True, True]


def test_ignored_parameters_are_configurable(url: str) -> None:
    queue = JobQueue(
        url, name=f"i{uuid.uuid4().hex[:8]}", dedup=True, dedup_ignore_params=["session*"]
    )
    specs = [
        JobSpec("https://a.example/?q=1&sessionid=9"),
        JobSpec("https://a.example/?q=1&SESSION_KEY=8"),
        JobSpec("https://a.example/?q=1&utm_source=x"),
    ]
    assert queue.submit_batch(specs).created == [True, False, True]


@pytest.mark.parametrize(
    "options",
    [
        {"dedup_error_rate": 0.5},
        {"dedup_capacity": 10},
        {"revisit": 0.5},
        {"dedup_bucket": 0.001},
        {"dedup_ignore_params": ["*"]},
    ],
)
def test_bad_dedup_settings_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        JobQueue("memory://", dedup=True, **options)


def test_a_bad_revisit_in_a_jobs_config_is_refused() -> None:
    queue = JobQueue("memory://", dedup=True)
    with pytest.raises(InvalidJobError, match="revisit"):
        queue.submit(JobSpec("https://a.example/", config={"revisit": "daily"}))
    with pytest.raises(InvalidJobError, match="revisit"):
        queue.submit(JobSpec("https://a.example/", config={"revisit": 0}))


@pytest.mark.parametrize(
    "options",
    [
        {"revisit": 3600},
        {"dedup_bucket": 60},
        {"dedup_ignore_params": ["ref"]},
        {"dedup_capacity": 5_000},
        {"dedup_error_rate": 0.001},
    ],
)
def test_dedup_settings_without_dedup_are_refused_not_ignored(options: dict[str, object]) -> None:
    (setting,) = options
    with pytest.raises(ConfigError, match=f"{setting}.*dedup=True"):
        JobQueue("memory://", **options)
    JobQueue("memory://", dedup=True, **options)  # the same, with the filter on


def test_a_filter_written_with_another_layout_is_refused_not_misread(
    shared_redis: RedisServer,
) -> None:
    # A classic Bloom filter (layout 1, before the blocked one) read as blocked words would
    # take most URLs it holds for new: the queue refuses to open and says what to do.
    from redis import Redis

    name = f"v1{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(shared_redis.url)
    client.set(
        f"scraperv4:{{{name}}}:seen:geometry",
        '{"version":1,"k":5,"error_rate":0.01,"capacity":1000000,"bucket_ms":86400000,'
        '"layers":[[0,11750016,1000000]]}',
    )
    client.close()
    with pytest.raises(ConfigError, match=r"another release.*seen:\* keys"):
        JobQueue(shared_redis.url, name=name, dedup=True).submit(
            JobSpec("https://shop.example/a", crawl_id="c")
        )
