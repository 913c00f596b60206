"""A 5,000-page crawl (fetch + extract 5 fields + record every item) of a local nginx site.

The same generated listing pages as ``bench_fetch.py``, served by nginx on 127.0.0.1. Each
client records every item somewhere durable, in its own process, at concurrency 64:

- scraperv4, one ``scraperv4 worker`` process on Redis (items to the queue's results
  stream), then two worker processes sharing that Redis;
- Scrapy with its CSS selectors and a JSON Lines feed;
- an aiohttp + selectolax script writing JSON Lines.

Goals (issue #5): >= 15x Scrapy, >= 3x aiohttp + selectolax; peak RSS per worker at
concurrency 64 <= 150 MB.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_fetch import CONCURRENCY, PAGES, start_nginx, urls  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_aiohttp(base: str, out: str) -> dict[str, float]:
    import asyncio

    import aiohttp
    from selectolax.lexbor import LexborHTMLParser

    def extract(html: str, url: str) -> list[dict[str, object]]:
        items = []
        for card in LexborHTMLParser(html).css("div.product-card"):
            items.append(
                {
                    "url": url,
                    "title": card.css_first("h3.title").text(strip=True),
                    "price": card.css_first("span.price").text(strip=True),
                    "rating": card.css_first("div.rating").attributes.get("data-rating"),
                    "link": card.css_first("a.product-link").attributes.get("href"),
                    "image": card.css_first("img.thumb").attributes.get("src"),
                }
            )
        return items

    async def main() -> tuple[float, int]:
        written = 0
        semaphore = asyncio.Semaphore(CONCURRENCY)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        with open(out, "w") as sink:
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(url: str) -> int:
                    async with semaphore, session.get(url) as response:
                        text = await response.text()
                    items = extract(text, url)
                    for item in items:
                        sink.write(json.dumps(item) + "\n")
                    return len(items)

                started = time.perf_counter()
                all_urls = urls(base)
                for offset in range(0, PAGES, 500):
                    counts = await asyncio.gather(
                        *(one(u) for u in all_urls[offset : offset + 500])
                    )
                    written += sum(counts)
                sink.flush()
                os.fsync(sink.fileno())
                return time.perf_counter() - started, written

    elapsed, items = asyncio.run(main())
    return {"pages_per_s": PAGES / elapsed, "items": items, "peak_rss_mb": peak_rss_mb()}


def run_scrapy(base: str, out: str) -> dict[str, float]:
    from bench_fetch import run_scrapy as scrapy_crawl

    result = scrapy_crawl(base, feed=out)
    with open(out) as lines:
        result["items"] = sum(1 for _ in lines)
    return result


def measure_client(name: str, base: str, out: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "client", name, base, out],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_workers(base: str, workers: int, scratch: Path) -> dict[str, float]:
    """Seeds a fresh Redis with the 5,000 URLs, then times `workers` worker processes from
    start to exit (they exit when the queue is done); peak RSS per worker from wait4."""
    from corpus import TEMPLATE
    from scraperv4.queue import JobQueue
    from scraperv4.worker import export_jsonl
    from support.redis_server import RedisServer

    templates = scratch / f"templates-{workers}"
    templates.mkdir()
    (templates / "bench.json").write_text(json.dumps(TEMPLATE))
    with RedisServer() as redis:
        queue = JobQueue(redis.url)
        queue.submit_many(
            {"id": f"p{i}", "template_id": TEMPLATE["id"], "target_url": url}
            for i, url in enumerate(urls(base))
        )
        command = [
            str(Path(sys.executable).with_name("scraperv4")), "worker",
            "--templates", str(templates),
            "--concurrency", str(CONCURRENCY), "--allow-private-networks", "--ignore-robots",
            "--metrics-addr", "off", "--exit-when-done",
        ]  # fmt: skip
        env = {**os.environ, "REDIS_URL": redis.url}
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                [*command, "--worker-id", f"bench-{n}"], env=env, stderr=subprocess.DEVNULL
            )
            for n in range(workers)
        ]
        rss = []
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            assert process.returncode == 0, f"worker exited with {process.returncode}"
            rss.append(usage.ru_maxrss / 1024)
        elapsed = time.perf_counter() - started
        stats = queue.stats().by_status
        assert stats["completed"] == PAGES, stats
        items = export_jsonl(queue, scratch / f"items-{workers}.jsonl")
    return {"pages_per_s": PAGES / elapsed, "items": items, "peak_rss_mb": max(rss)}


def main() -> int:
    from _common import report

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        nginx, base = start_nginx(scratch)
        try:
            one = run_workers(base, 1, scratch)
            two = run_workers(base, 2, scratch)
            scrapy = measure_client("scrapy", base, str(scratch / "scrapy.jsonl"))
            aio = measure_client("aiohttp", base, str(scratch / "aiohttp.jsonl"))
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    assert one["items"] == two["items"] == scrapy["items"] == aio["items"], (one, two, scrapy, aio)
    met = report(
        "crawl",
        {
            "pages": PAGES,
            "concurrency per process": CONCURRENCY,
            "scraperv4 1 worker (pages/s)": one["pages_per_s"],
            "scraperv4 2 workers on Redis (pages/s)": two["pages_per_s"],
            "Scrapy (pages/s)": scrapy["pages_per_s"],
            "aiohttp+selectolax (pages/s)": aio["pages_per_s"],
            "scraperv4 peak RSS per worker, 1 worker (MB)": one["peak_rss_mb"],
            "scraperv4 peak RSS per worker, 2 workers (MB)": two["peak_rss_mb"],
            "Scrapy peak RSS (MB)": scrapy["peak_rss_mb"],
            "aiohttp peak RSS (MB)": aio["peak_rss_mb"],
            "items recorded (each client)": one["items"],
        },
        {
            "1 worker vs Scrapy": (one["pages_per_s"] / scrapy["pages_per_s"], 15.0),
            "1 worker vs aiohttp+selectolax": (one["pages_per_s"] / aio["pages_per_s"], 3.0),
            "2 workers vs Scrapy": (two["pages_per_s"] / scrapy["pages_per_s"], 15.0),
            "150 MB / peak RSS per worker": (
                150.0 / max(one["peak_rss_mb"], two["peak_rss_mb"]),
                1.0,
            ),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "client":
        name, base, out = sys.argv[2:]
        result = run_scrapy(base, out) if name == "scrapy" else run_aiohttp(base, out)
        print(json.dumps(result))
    else:
        sys.exit(main())
