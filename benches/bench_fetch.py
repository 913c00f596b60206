"""Fetching (and fetching + extracting) 5,000 listing pages from a local nginx, streamed.

nginx (Debian's package) serves the generated corpus on 127.0.0.1 so the server is not the
bottleneck; `wrk -t2 -c64` on the same server gives the machine's ceiling. Each client runs
in its own process (so its peak RSS and CPU time are its own), at concurrency 64, over a lazy
generator of URLs: ScraperV4 through `Fetcher.stream` / `Fetcher.stream_extract`, aiohttp
through 64 workers pulling from the same kind of generator (its best streaming shape), and
ScraperV4's earlier shape (`fetch_many` in calls of 500) for reference.

This machine's speed drifts by up to 2x within minutes, so the variants run interleaved
(wrk, ours, aiohttp, ... then again) for ROUNDS rounds, and each ratio is taken within a
round: min / median / max over the rounds. Then a long run of 100,000 URLs (the corpus under
distinct query strings) per client samples RSS every 10,000 pages: the stream's RSS must stay
flat, and its peak is reported next to aiohttp's. Goals (issue #20, row 3):

- streamed fetch: >= 2x aiohttp and >= 40 % of wrk's requests/s (medians of the rounds);
- RSS flat over 100,000 URLs (the largest sample of the second half within 10 % of the
  largest of the first half);
- fetch + extract 5 fields: >= 3x aiohttp + selectolax, and >= 15x Scrapy (its CSS selectors).

`python benches/bench_fetch.py [--rounds N] [--long N]`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

PAGES = 5_000
LONG = 100_000
DISTINCT = 200
CONCURRENCY = 64
ROUNDS = 3
SAMPLE_EVERY = 10_000


def urls(base: str, count: int = PAGES) -> Iterator[str]:
    """The URLs, generated lazily (a list of 100,000 would be the caller's memory, not ours)."""
    return (f"{base}/p/{i % DISTINCT}.html?n={i}" for i in range(count))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Counts pages, samples RSS every SAMPLE_EVERY, and times the run from ``start``."""

    def __init__(self) -> None:
        self.pages = 0
        self.items = 0
        self.samples: list[float] = []
        self.started = time.perf_counter()
        self.cpu = cpu_s()

    def page(self, items: int = 0) -> None:
        self.pages += 1
        self.items += items
        if self.pages % SAMPLE_EVERY == 0:
            self.samples.append(round(rss_mb(), 1))

    def done(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        return {
            "pages_per_s": self.pages / elapsed,
            "items": self.items,
            "cpu_s": cpu_s() - self.cpu,
            "peak_rss_mb": peak_rss_mb(),
            "rss_samples_mb": self.samples,
        }


# -- clients (each run in a child process: `bench_fetch.py client NAME BASE COUNT`) --------


def run_ours(base: str, count: int, extract: bool) -> dict[str, Any]:
    from corpus import TEMPLATE
    from scraperv4.exceptions import FetchError
    from scraperv4.extract import Template
    from scraperv4.fetch import Fetcher

    fetcher = Fetcher(
        concurrency=CONCURRENCY,
        per_host_concurrency=CONCURRENCY,
        allow_private_networks=True,
        respect_robots=False,
    )
    template = Template.from_dict(TEMPLATE)
    meter = Meter()
    if extract:
        for _url, items in fetcher.stream_extract(urls(base, count), template):
            assert isinstance(items, list), items
            meter.page(len(items))
    else:
        for _url, page in fetcher.stream(urls(base, count)):
            assert not isinstance(page, FetchError), page
            assert page.status == 200, page
            meter.page()
    return meter.done()


def run_ours_async(base: str, count: int) -> dict[str, Any]:
    """The asyncio twin, ``async for`` over ``Fetcher.stream_async``."""
    import asyncio

    from scraperv4.exceptions import FetchError
    from scraperv4.fetch import Fetcher

    fetcher = Fetcher(
        concurrency=CONCURRENCY,
        per_host_concurrency=CONCURRENCY,
        allow_private_networks=True,
        respect_robots=False,
    )

    async def main() -> dict[str, Any]:
        meter = Meter()
        async for _url, page in fetcher.stream_async(urls(base, count)):
            assert not isinstance(page, FetchError), page
            assert page.status == 200, page
            meter.page()
        return meter.done()

    return asyncio.run(main())


def run_ours_batches(base: str, count: int) -> dict[str, Any]:
    """The shape before streaming: fetch_many in calls of 500."""
    from scraperv4.fetch import Fetcher

    fetcher = Fetcher(
        concurrency=CONCURRENCY,
        per_host_concurrency=CONCURRENCY,
        allow_private_networks=True,
        respect_robots=False,
    )
    meter = Meter()
    source = urls(base, count)
    while chunk := [url for _, url in zip(range(500), source)]:
        for page in fetcher.fetch_many(chunk):
            assert getattr(page, "status", None) == 200, page
            meter.page()
    return meter.done()


def run_aiohttp(base: str, count: int, extract: bool) -> dict[str, Any]:
    import asyncio

    import aiohttp

    from corpus import selectolax_items

    async def main() -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            source = urls(base, count)
            meter = Meter()

            async def worker() -> None:
                for url in source:  # the workers share one lazy generator
                    async with session.get(url) as response:
                        body = await response.read()
                        assert response.status == 200
                    if extract:
                        meter.page(selectolax_items(body.decode()))
                    else:
                        meter.page()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return meter.done()

    return asyncio.run(main())


def run_scrapy(base: str, count: int, feed: str | None = None) -> dict[str, Any]:
    """Scrapy over the URLs with its CSS selectors; items also to a JSON Lines ``feed``."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    counted = {"items": 0}

    class Listing(scrapy.Spider):  # type: ignore[misc]
        name = "listing"
        start_urls = list(urls(base, count))  # noqa: RUF012 - scrapy reads it

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
    return {"pages_per_s": count / elapsed, "items": counted["items"], "peak_rss_mb": peak_rss_mb()}


CLIENTS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "ours-fetch": lambda base, n: run_ours(base, n, extract=False),
    "ours-async": run_ours_async,
    "ours-batches": run_ours_batches,
    "ours-extract": lambda base, n: run_ours(base, n, extract=True),
    "aiohttp-fetch": lambda base, n: run_aiohttp(base, n, extract=False),
    "aiohttp-extract": lambda base, n: run_aiohttp(base, n, extract=True),
    "scrapy-extract": run_scrapy,
}


def client(name: str, base: str, count: int) -> None:
    print(json.dumps(CLIENTS[name](base, count)))


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


def wrk_requests_per_second(base: str, seconds: int = 3) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONCURRENCY}", f"-d{seconds}s", f"{base}/p/1.html"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def measure(name: str, base: str, count: int = PAGES) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "client", name, base, str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``median (min-max)``."""
    ordered = sorted(v * scale for v in values)
    median = ordered[len(ordered) // 2]
    return f"{median:,.{digits}f} ({ordered[0]:,.{digits}f}-{ordered[-1]:,.{digits}f})"


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    from _common import report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--long", type=int, default=LONG, help="URLs of the RSS run (0: none)")
    parser.add_argument("--no-scrapy", action="store_true", help="skip the Scrapy run")
    args = parser.parse_args()
    variants = [
        "wrk",
        "ours-fetch",
        "aiohttp-fetch",
        "ours-async",
        "ours-batches",
        "ours-extract",
        "aiohttp-extract",
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    long_runs: dict[str, dict[str, Any]] = {}
    loads = [load()]
    with tempfile.TemporaryDirectory() as tmp:
        nginx, base = start_nginx(Path(tmp))
        try:
            for round_ in range(args.rounds):
                for name in variants:  # A B C ... A B C ...: each round compares like with like
                    if name == "wrk":
                        runs[name].append({"pages_per_s": wrk_requests_per_second(base)})
                    else:
                        runs[name].append(measure(name, base))
                    print(
                        f"  round {round_ + 1} {name:<16} {runs[name][-1]['pages_per_s']:>10,.0f}"
                        f" pages/s  (load {load()})",
                        flush=True,
                    )
                loads.append(load())
            if args.long:
                for name in ("ours-fetch", "aiohttp-fetch"):
                    long_runs[name] = measure(name, base, args.long)
                    print(f"  {args.long:,} URLs {name}: {long_runs[name]}", flush=True)
                loads.append(load())
            scrapy = None if args.no_scrapy else measure("scrapy-extract", base)
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)

    def rates(name: str) -> list[float]:
        return [run["pages_per_s"] for run in runs[name]]

    def ratios(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(rates(a), rates(b))]

    items = {run["items"] for name in ("ours-extract", "aiohttp-extract") for run in runs[name]}
    if scrapy is not None:
        items.add(scrapy["items"])
    assert len(items) == 1, f"the clients found different items: {items}"
    figures: dict[str, Any] = {
        "pages (each round)": PAGES,
        "rounds (interleaved)": args.rounds,
        "concurrency": CONCURRENCY,
        "load average (start, after each round, end)": " | ".join(loads),
        "wrk -t2 -c64 (requests/s)": spread(rates("wrk"), digits=0),
        "scraperv4 stream (pages/s)": spread(rates("ours-fetch"), digits=0),
        "aiohttp, 64 workers (pages/s)": spread(rates("aiohttp-fetch"), digits=0),
        "scraperv4 stream_async (pages/s)": spread(rates("ours-async"), digits=0),
        "scraperv4 fetch_many in calls of 500 (pages/s)": spread(rates("ours-batches"), digits=0),
        "stream / aiohttp": spread(ratios("ours-fetch", "aiohttp-fetch")),
        "stream / wrk (%)": spread(ratios("ours-fetch", "wrk"), scale=100, digits=1),
        "stream_async / aiohttp": spread(ratios("ours-async", "aiohttp-fetch")),
        "stream / fetch_many in calls of 500": spread(ratios("ours-fetch", "ours-batches")),
        "CPU s per 1,000 pages: stream": spread(
            [r["cpu_s"] / PAGES * 1000 for r in runs["ours-fetch"]], digits=3
        ),
        "CPU s per 1,000 pages: aiohttp": spread(
            [r["cpu_s"] / PAGES * 1000 for r in runs["aiohttp-fetch"]], digits=3
        ),
        "scraperv4 stream_extract (pages/s)": spread(rates("ours-extract"), digits=0),
        "aiohttp + selectolax (pages/s)": spread(rates("aiohttp-extract"), digits=0),
        "stream_extract / aiohttp + selectolax": spread(ratios("ours-extract", "aiohttp-extract")),
        "items (each client)": items.pop(),
    }
    goals = {
        "stream vs aiohttp (median of rounds)": (
            median(ratios("ours-fetch", "aiohttp-fetch")),
            2.0,
        ),
        "stream vs wrk ceiling (x100 %)": (median(ratios("ours-fetch", "wrk")), 0.4),
        "stream_extract vs aiohttp+selectolax": (
            median(ratios("ours-extract", "aiohttp-extract")),
            3.0,
        ),
    }
    if scrapy is not None:
        figures["Scrapy fetch+extract (pages/s)"] = scrapy["pages_per_s"]
        goals["stream_extract vs Scrapy"] = (
            median(rates("ours-extract")) / scrapy["pages_per_s"],
            15.0,
        )
    if long_runs:
        ours, peer = long_runs["ours-fetch"], long_runs["aiohttp-fetch"]
        figures[f"{args.long:,} URLs: stream (pages/s)"] = ours["pages_per_s"]
        figures[f"{args.long:,} URLs: aiohttp (pages/s)"] = peer["pages_per_s"]
        figures[f"RSS every {SAMPLE_EVERY:,} pages: stream (MB)"] = ours["rss_samples_mb"]
        figures[f"RSS every {SAMPLE_EVERY:,} pages: aiohttp (MB)"] = peer["rss_samples_mb"]
        figures["peak RSS: stream (MB)"] = ours["peak_rss_mb"]
        figures["peak RSS: aiohttp (MB)"] = peer["peak_rss_mb"]
        # Flat: no growth from the first half of the run to the second beyond 10 % (the
        # samples swing by about a window of pages either way: the largest of each half).
        samples = ours["rss_samples_mb"]
        half = len(samples) // 2
        goals["stream RSS flat (1st half max / 2nd half max)"] = (
            max(samples[:half]) / max(samples[half:]),
            1 / 1.1,
        )
    met = report("fetch", figures, goals)
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "client":
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
