"""A Redis password never shows (issue #15): whatever it holds (``/ # ? @ %2F``), it is masked
in exceptions, ``repr``, ``config show``, the CLI's stderr, the coordinator's log at debug
level and every answer the coordinator serves. Real redis-server with an ACL user, real
processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from scraperv4.exceptions import ConfigError, QueueUnavailableError
from scraperv4.queue import JobQueue
from support.redis_server import RedisServer, free_port

CLI = [sys.executable, "-m", "scraperv4"]
# Passwords as stored in Redis; each is written percent-encoded in the URL.
PASSWORDS = ["pa/ss-9", "pa#ss-9", "pa?ss-9", "pa@ss-9", "pa%2Fss-9", "/?#@%2F:x-9"]
TOKEN = "test-token-0123456789abcdef"


def encoded(password: str) -> str:
    return urllib.parse.quote(password, safe="")


def leaks(text: str, password: str) -> bool:
    return password in text or encoded(password) in text


@pytest.mark.parametrize("raw", ["pa/ss-9", "pa#ss-9", "pa?ss-9", "/?#@x-9"])
def test_an_unencoded_delimiter_is_refused_with_the_url_masked(raw: str) -> None:
    url = f"redis://app:{raw}@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError) as caught:
        JobQueue(url, operation_timeout=1)
    message = str(caught.value)
    assert raw not in message and "%2F" in message, message
    result = subprocess.run(
        [*CLI, "stats"],
        env={**os.environ, "REDIS_URL": url, "SCRAPERV4_LOG_LEVEL": "debug"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert raw not in result.stderr + result.stdout, result.stderr


def test_passwords_are_masked_everywhere(tmp_path: Path) -> None:
    acl = []
    for i, password in enumerate(PASSWORDS):
        acl += ["--user", f"u{i}", "on", f">{password}", "~*", "&*", "+@all"]
    with RedisServer(acl, data_dir=tmp_path) as server:
        for i, password in enumerate(PASSWORDS):
            url = f"redis://u{i}:{encoded(password)}@127.0.0.1:{server.port}/0"
            queue = JobQueue(url)
            queue.stats()  # the password worked
            for text in (repr(queue), queue.url):
                assert not leaks(text, password), text
            wrong = url.replace(encoded(password), encoded(password + "x"))
            with pytest.raises(QueueUnavailableError) as caught:
                JobQueue(wrong, operation_timeout=2)
            assert not leaks(str(caught.value), password + "x"), str(caught.value)
            shown = subprocess.run(
                [*CLI, "config", "show", "--role", "worker"],
                env={**os.environ, "REDIS_URL": url},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert f"u{i}:***@127.0.0.1" in shown.stdout, shown.stdout
            assert not leaks(shown.stdout + shown.stderr, password)

        # The coordinator: its log at debug level and its answers, with Redis up and down.
        password = PASSWORDS[-1]
        url = f"redis://u5:{encoded(password)}@127.0.0.1:{server.port}/0"
        port = free_port()
        log = tmp_path / "coordinator.log"
        env = {
            **os.environ,
            "REDIS_URL": url,
            "SCRAPERV4_API_TOKEN": TOKEN,
            "SCRAPERV4_LOG_LEVEL": "debug",
        }
        with open(log, "wb") as out:
            coordinator = subprocess.Popen(
                [*CLI, "coordinator", "--addr", f"127.0.0.1:{port}"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        answers: list[str] = []

        def get(path: str) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    answers.append(str(response.headers) + response.read().decode())
                    return int(response.status)
            except urllib.error.HTTPError as error:
                answers.append(str(error.headers) + error.read().decode())
                return int(error.code)

        paths = ["/", "/api/health", "/api/live", "/api/queue/stats", "/api/jobs",
                 "/api/workers", "/metrics", "/api/openapi.json"]  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if get("/api/health") == 200:
                        break
                except OSError:
                    pass
                assert coordinator.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            for path in paths:
                get(path)
            server.stop()
            assert get("/api/health") == 503
            for path in paths:
                get(path)
        finally:
            coordinator.terminate()
            coordinator.wait(timeout=15)
        assert answers
        for answer in answers:
            assert not leaks(answer, password), answer
        text = log.read_text()
        assert "DEBUG" in text or "debug" in text.lower(), text[:500]
        assert not leaks(text, password), text
