"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
