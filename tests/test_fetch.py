"""The fetcher against a real HTTP server on 127.0.0.1: limits, errors, politeness, guard.

Only loopback addresses are used. Every request loop is bounded (retries, redirects and
timeouts are small), and the servers stop when the test ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from scraperv4.exceptions import ConfigError, FetchError
from scraperv4.fetch import Fetcher
from support.http_server import PAGE, Server

LOCAL = {"allow_private_networks": True, "retry_base": 0.05, "max_retry_after": 2.0}


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(respect_robots=False, **LOCAL)


def fetch_error(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url)
    return caught.value


def test_a_page_with_its_metadata(server: Server, fetcher: Fetcher) -> None:
    response = fetcher.fetch(f"{server.base}/page")
    assert response.status == 200
    assert response.content == PAGE
    assert response.text == PAGE.decode()
    assert response.encoding == "UTF-8"
    assert response.final_url == f"{server.base}/page"
    assert ("content-length", str(len(PAGE))) in response.headers
    assert response.wire_bytes == len(PAGE)
    assert response.elapsed > 0


@pytest.mark.parametrize("route", ["/gzip", "/br"])
def test_compressed_bodies_are_decoded(server: Server, fetcher: Fetcher, route: str) -> None:
    response = fetcher.fetch(server.base + route)
    assert response.content == PAGE
    assert response.wire_bytes < len(PAGE) + 64


def test_charsets_from_header_and_meta(server: Server, fetcher: Fetcher) -> None:
    assert fetcher.fetch(f"{server.base}/latin1").text == "<p>café crème</p>"
    cyrillic = fetcher.fetch(f"{server.base}/meta-1251")
    assert "Привет" in cyrillic.text
    assert cyrillic.encoding == "windows-1251"


def test_slow_first_byte_times_out(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, read_timeout=0.5, retries=0, **LOCAL)
    error = fetch_error(fetcher, f"{server.base}/slow-first-byte?delay=3")
    assert error.kind == "timeout"


def test_a_slow_drip_hits_the_read_timeout(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, read_timeout=0.4, retries=0, **LOCAL)
    started = time.monotonic()
    error = fetch_error(fetcher, f"{server.base}/drip")
    assert error.kind == "timeout"
    assert time.monotonic() - started < 5


def test_the_total_timeout_bounds_everything(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, read_timeout=5, total_timeout=1, retries=0, **LOCAL)
    assert fetch_error(fetcher, f"{server.base}/drip").kind == "timeout"


def test_redirects_are_followed_and_limited(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, max_redirects=3, **LOCAL)
    response = fetcher.fetch(f"{server.base}/redirect/2")
    assert response.final_url == f"{server.base}/page"
    assert fetch_error(fetcher, f"{server.base}/redirect/5").kind == "too_many_redirects"
    loop = fetch_error(fetcher, f"{server.base}/loop-a")
    assert loop.kind == "too_many_redirects"
    assert "loop" in str(loop)


def test_429_with_retry_after_is_retried(server: Server, fetcher: Fetcher) -> None:
    started = time.monotonic()
    response = fetcher.fetch(f"{server.base}/429")
    assert response.status == 200
    assert server.hits["/429"] == 2
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was honoured"


def test_503_then_200_is_retried(server: Server, fetcher: Fetcher) -> None:
    assert fetcher.fetch(f"{server.base}/503-then-200").status == 200
    assert server.hits["/503-then-200"] == 2


def test_persistent_5xx_ends_as_http_status_after_the_retries(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, retries=2, **LOCAL)
    error = fetch_error(fetcher, f"{server.base}/always-500")
    assert (error.kind, error.status) == ("http_status", 500)
    assert server.hits["/always-500"] == 3


def test_other_4xx_is_not_retried(server: Server, fetcher: Fetcher) -> None:
    error = fetch_error(fetcher, f"{server.base}/status/404")
    assert (error.kind, error.status) == ("http_status", 404)
    assert server.hits["/status/404"] == 1


@pytest.mark.parametrize("route", ["/gzip-bomb", "/brotli-bomb"])
def test_compression_bombs_are_stopped(server: Server, fetcher: Fetcher, route: str) -> None:
    error = fetch_error(fetcher, server.base + route)
    assert error.kind == "too_large"
    assert "ratio" in str(error) or "limit" in str(error)


def test_a_bomb_under_a_generous_ratio_still_hits_the_decoded_size_limit(server: Server) -> None:
    fetcher = Fetcher(
        respect_robots=False, max_decompression_ratio=10**6, max_body_bytes=1024 * 1024, **LOCAL
    )
    error = fetch_error(fetcher, f"{server.base}/gzip-bomb")
    assert error.kind == "too_large"
    assert "after decompression" in str(error)


def test_oversized_bodies_with_and_without_content_length(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, max_body_bytes=1024 * 1024, **LOCAL)
    declared = fetch_error(fetcher, f"{server.base}/big-declared")
    assert declared.kind == "too_large"
    assert "Content-Length" in str(declared)
    streamed = fetch_error(fetcher, f"{server.base}/big-undeclared")
    assert streamed.kind == "too_large"


def test_robots_disallow_and_crawl_delay() -> None:
    robots = "User-agent: ScraperV4\nDisallow: /private\nCrawl-delay: 0.5\n"
    with Server(robots=robots) as server:
        fetcher = Fetcher(**LOCAL)
        error = fetch_error(fetcher, f"{server.base}/private/page")
        assert error.kind == "robots_denied"
        assert server.hits["/private/page"] == 0, "no request was sent"
        started = time.monotonic()
        for _ in range(3):
            fetcher.fetch(f"{server.base}/page")
        assert time.monotonic() - started >= 0.9, "crawl-delay spaced the requests"
        assert server.hits["/robots.txt"] == 1, "robots.txt fetched once and cached"


def test_a_missing_robots_txt_allows_everything(server: Server) -> None:
    assert Fetcher(**LOCAL).fetch(f"{server.base}/private/page").status == 200


def test_politeness_delay_spaces_requests_to_one_host(server: Server) -> None:
    fetcher = Fetcher(respect_robots=False, delay_range=(0.3, 0.3), **LOCAL)
    started = time.monotonic()
    results = fetcher.fetch_many([f"{server.base}/page"] * 4)
    assert all(r.status == 200 for r in results)
    assert time.monotonic() - started >= 0.9


def test_fetch_many_keeps_order_and_failures_in_place(server: Server, fetcher: Fetcher) -> None:
    results = fetcher.fetch_many([f"{server.base}/page", f"{server.base}/status/404", "bad url"])
    assert results[0].status == 200
    assert isinstance(results[1], FetchError)
    assert results[1].kind == "http_status"
    assert isinstance(results[2], FetchError)
    assert results[2].kind == "decode"


def test_async_twins_give_the_same_results(server: Server, fetcher: Fetcher) -> None:
    async def main() -> tuple[bytes, list[int]]:
        one = await fetcher.fetch_async(f"{server.base}/page")
        many = await fetcher.fetch_many_async([f"{server.base}/page", f"{server.base}/gzip"])
        return one.content, [r.status for r in many]

    content, statuses = asyncio.run(main())
    assert content == fetcher.fetch(f"{server.base}/page").content
    assert statuses == [200, 200]


def test_dead_servers_are_connect_errors(fetcher: Fetcher) -> None:
    from support.redis_server import free_port

    fetcher = Fetcher(respect_robots=False, retries=1, **LOCAL)
    assert fetch_error(fetcher, f"http://127.0.0.1:{free_port()}/").kind == "connect"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Fetcher(concurency=3)
    with pytest.raises(ConfigError, match="delay_range"):
        Fetcher(delay_range=(3, 1))
    with pytest.raises(ConfigError, match="allowed_networks"):
        Fetcher(allowed_networks=["not a cidr"])


# -- SSRF guard, end to end (loopback only: the canary proves no connection was made) -----


@pytest.fixture
def canary() -> Iterator[Server]:
    with Server(host="127.0.0.3") as running:
        yield running


def test_loopback_forms_are_refused_by_default_without_a_connection(canary: Server) -> None:
    port = canary.server_address[1]
    fetcher = Fetcher(respect_robots=False, retries=0)
    for url in [
        f"http://127.0.0.3:{port}/page",
        f"http://2130706435:{port}/page",  # 127.0.0.3 as one number
        f"http://0x7f000003:{port}/page",
        f"http://127.3:{port}/page",
        f"http://[::ffff:127.0.0.3]:{port}/page",
        f"http://localhost:{port}/page",  # a name that resolves to loopback
    ]:
        error = fetch_error(fetcher, url)
        assert error.kind == "blocked_address", (url, error)
    assert canary.connections == 0


def test_a_redirect_to_a_refused_address_is_refused(canary: Server) -> None:
    with Server(host="127.0.0.2") as front:
        fetcher = Fetcher(respect_robots=False, retries=0, allowed_networks=["127.0.0.2/32"])
        assert fetcher.fetch(f"{front.base}/page").status == 200, "the allow list opens it"
        target = f"{canary.base}/page"
        error = fetch_error(fetcher, f"{front.base}/redirect-to?url={target}")
        assert error.kind == "blocked_address"
        assert "127.0.0.3" in str(error)
    assert canary.connections == 0


def test_the_allow_list_by_host_name(server: Server) -> None:
    port = server.server_address[1]
    url = f"http://localhost:{port}/page"
    assert fetch_error(Fetcher(respect_robots=False, retries=0), url).kind == "blocked_address"
    allowed = Fetcher(respect_robots=False, retries=0, allowed_hosts=["localhost"])
    assert allowed.fetch(url).status == 200


def test_fetch_extract_many_runs_the_template_on_each_page(
    server: Server, fetcher: Fetcher
) -> None:
    from scraperv4.extract import Template

    template = Template.from_dict(
        {"id": "t", "item": "body", "fields": [{"name": "text", "selector": "p.x"}]}
    )
    results = fetcher.fetch_extract_many(
        [f"{server.base}/page", f"{server.base}/status/404"], template
    )
    assert results[0] == [{"text": "hello"}]
    assert isinstance(results[1], FetchError)
