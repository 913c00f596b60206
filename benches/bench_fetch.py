"""Fetching (and fetching + extracting) 5,000 listing pages from a local nginx.

nginx (Debian's package) serves the generated corpus on 127.0.0.1 so the server is not the
bottleneck; `wrk -t2 -c64` on the same server gives the machine's ceiling. Each client runs
in its own process (so its peak RSS is its own), at concurrency 64. Goals (issue #4):

- fetch only: >= 1.5x aiohttp, and >= 40% of wrk's requests/s;
- fetch + extract 5 fields: >= 3x aiohttp + selectolax, and >= 15x Scrapy (its CSS selectors).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

PAGES = 5_000
DISTINCT = 200
CONCURRENCY = 64


def urls(base: str) -> list[str]:
    return [f"{base}/p/{i % DISTINCT}.html?n={i}" for i in range(PAGES)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- clients (each run in a child process: `bench_fetch.py client NAME BASE`) ---------------


def run_ours(base: str, extract: bool) -> dict[str, float]:
    from corpus import TEMPLATE
    from scraperv4.extract import Template
    from scraperv4.fetch import Fetcher

    fetcher = Fetcher(
        concurrency=CONCURRENCY,
        per_host_concurrency=CONCURRENCY,
        allow_private_networks=True,
        respect_robots=False,
    )
    template = Template.from_dict(TEMPLATE)
    started = time.perf_counter()
    items = 0
    batch = 500  # bounded memory: pages are dropped once extracted
    all_urls = urls(base)
    for offset in range(0, len(all_urls), batch):
        chunk = all_urls[offset : offset + batch]
        if extract:
            results = fetcher.fetch_extract_many(chunk, template)
            assert all(isinstance(r, list) for r in results)
            items += sum(map(len, results))
        else:
            pages = fetcher.fetch_many(chunk)
            assert all(getattr(p, "status", None) == 200 for p in pages)
    elapsed = time.perf_counter() - started
    return {"pages_per_s": PAGES / elapsed, "items": items, "peak_rss_mb": peak_rss_mb()}


def run_aiohttp(base: str, extract: bool) -> dict[str, float]:
    import asyncio

    import aiohttp

    from corpus import selectolax_items

    async def main() -> tuple[float, int]:
        items = 0
        semaphore = asyncio.Semaphore(CONCURRENCY)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(url: str) -> int:
                async with semaphore, session.get(url) as response:
                    text = await response.text()
                    assert response.status == 200
                if not extract:
                    return 0
                return selectolax_items(text)

            started = time.perf_counter()
            for offset in range(0, PAGES, 500):
                counts = await asyncio.gather(*(one(u) for u in urls(base)[offset : offset + 500]))
                items += sum(counts)
            return time.perf_counter() - started, items

    elapsed, items = asyncio.run(main())
    return {"pages_per_s": PAGES / elapsed, "items": items, "peak_rss_mb": peak_rss_mb()}


def run_scrapy(base: str, feed: str | None = None) -> dict[str, float]:
    """Scrapy over the URLs with its CSS selectors; items also to a JSON Lines ``feed``."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    counted = {"items": 0}

    class Listing(scrapy.Spider):  # type: ignore[misc]
        name = "listing"
        start_urls = urls(base)

        def parse(self, response):  # type: ignore[no-untyped-def]
            for card in response.css("div.product-card"):
                counted["items"] += 1
                yield {
                    "url": response.url,
                    "title": card.css("h3.title::text").get(),
                    "price": card.css("span.price::text").get(),
                    "rating": card.css("div.rating::attr(data-rating)").get(),
                    "link": card.css("a.product-link::attr(href)").get(),
                    "image": card.css("img.thumb::attr(src)").get(),
                }

    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": CONCURRENCY,
            "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENCY,
            "ROBOTSTXT_OBEY": False,
            "LOG_LEVEL": "ERROR",
            "TELNETCONSOLE_ENABLED": False,
            "FEEDS": {feed: {"format": "jsonlines"}} if feed else {},
        }
    )
    process.crawl(Listing)
    started = time.perf_counter()
    process.start()
    elapsed = time.perf_counter() - started
    return {"pages_per_s": PAGES / elapsed, "items": counted["items"], "peak_rss_mb": peak_rss_mb()}


def client(name: str, base: str) -> None:
    runs = {
        "ours-fetch": lambda: run_ours(base, extract=False),
        "ours-extract": lambda: run_ours(base, extract=True),
        "aiohttp-fetch": lambda: run_aiohttp(base, extract=False),
        "aiohttp-extract": lambda: run_aiohttp(base, extract=True),
        "scrapy-extract": lambda: run_scrapy(base),
    }
    print(json.dumps(runs[name]()))


# -- the server and the run ---------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location / {{ }}
    }}
}}
"""


def start_nginx(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    from corpus import corpus
    from support.redis_server import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is missing: `make bench` installs it (apt-get install nginx-light)")
    # nginx's workers run as an unprivileged user: the temporary directory must be readable.
    root.chmod(0o755)
    (root / "www" / "p").mkdir(parents=True)
    for n, html in enumerate(corpus(DISTINCT)):
        (root / "www" / "p" / f"{n}.html").write_text(html)
    port = free_port()
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port))
    process = subprocess.Popen(
        [nginx, "-c", str(root / "nginx.conf"), "-p", str(root), "-g", "daemon off;"]
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            import urllib.request

            urllib.request.urlopen(f"{base}/p/0.html", timeout=1).read()  # noqa: S310
            return process, base
        except OSError:
            time.sleep(0.05)
    process.terminate()  # SIGTERM: the master stops its workers too
    process.wait(timeout=10)
    raise SystemExit(f"nginx did not serve the corpus; see {root}/error.log")


def wrk_requests_per_second(base: str) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONCURRENCY}", "-d5s", f"{base}/p/1.html"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def measure(name: str, base: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "client", name, base],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from _common import report

    with tempfile.TemporaryDirectory() as tmp:
        nginx, base = start_nginx(Path(tmp))
        try:
            wrk = wrk_requests_per_second(base)
            ours_fetch = measure("ours-fetch", base)
            aiohttp_fetch = measure("aiohttp-fetch", base)
            ours_extract = measure("ours-extract", base)
            aiohttp_extract = measure("aiohttp-extract", base)
            scrapy_extract = measure("scrapy-extract", base)
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    assert ours_extract["items"] == aiohttp_extract["items"] == scrapy_extract["items"]
    met = report(
        "fetch",
        {
            "pages": PAGES,
            "concurrency": CONCURRENCY,
            "wrk -t2 -c64 (requests/s)": wrk,
            "scraperv4 fetch (pages/s)": ours_fetch["pages_per_s"],
            "aiohttp fetch (pages/s)": aiohttp_fetch["pages_per_s"],
            "scraperv4 fetch peak RSS (MB)": ours_fetch["peak_rss_mb"],
            "aiohttp fetch peak RSS (MB)": aiohttp_fetch["peak_rss_mb"],
            "scraperv4 fetch+extract (pages/s)": ours_extract["pages_per_s"],
            "aiohttp+selectolax fetch+extract (pages/s)": aiohttp_extract["pages_per_s"],
            "Scrapy fetch+extract (pages/s)": scrapy_extract["pages_per_s"],
            "items (each client)": ours_extract["items"],
        },
        {
            "fetch vs aiohttp": (ours_fetch["pages_per_s"] / aiohttp_fetch["pages_per_s"], 1.5),
            "fetch vs wrk ceiling (x100 %)": (ours_fetch["pages_per_s"] / wrk, 0.4),
            "fetch+extract vs aiohttp+selectolax": (
                ours_extract["pages_per_s"] / aiohttp_extract["pages_per_s"],
                3.0,
            ),
            "fetch+extract vs Scrapy": (
                ours_extract["pages_per_s"] / scrapy_extract["pages_per_s"],
                15.0,
            ),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        client(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
