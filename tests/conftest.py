"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free loopback port, stopped after the test.

    Fails (never skips) when ``redis-server`` is not installed.
    """
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a fresh ``redis-server`` (see :func:`redis_server`)."""
    return redis_server.url


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[RedisCluster]:
    """One 6-node Redis Cluster (3 masters, 3 replicas) for the whole run; each test uses
    queue names of its own in it (tests that move slots start their own cluster)."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    """A 6-node Redis Cluster of the test's own (for tests that move slots or fail over)."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(params=["redis", "sqlite"])
def durable_queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs twice: on a fresh ``redis-server`` and on a SQLite file."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite://{tmp_path / 'q.db'}"
