"""The throwaway redis-server fixture: a real server, started and stopped by PID."""

from __future__ import annotations

import os
import socket

import pytest
import redis

from support.redis_server import INSTALL_HINT, RedisServer, RedisServerMissingError


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_fixture_gives_a_real_server(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        assert client.info("server")["process_id"] == redis_server.pid
        assert client.config_get("dir")["dir"] == str(redis_server.data_dir.resolve())
    finally:
        client.close()


def test_stop_ends_the_process_and_frees_the_port() -> None:
    server = RedisServer().start()
    pid, port, data_dir = server.pid, server.port, server.data_dir
    assert _listening(port)
    server.stop()
    assert not _listening(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()


def test_a_missing_binary_fails_loudly_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerMissingError) as caught:
        RedisServer()
    assert str(caught.value) == INSTALL_HINT
    assert "apt-get install -y redis-server" in str(caught.value)
