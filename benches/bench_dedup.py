"""The seen-URL filter (dedup) against a local redis-server: memory per URL and submit cost.

Goals (issue #14):

- seen-URL memory at 1 M URLs (10 M extrapolated: the filter's size is linear in its
  capacity) <= 2 bytes per URL at a 1 % false-positive rate, and >= 20x smaller than a Redis
  SET of the same number of 128-bit fingerprints (as 32 hex characters; scrapy-redis keeps
  40-character SHA-1s) measured in the same run;
- submit throughput with dedup on >= 90 % of the batched submit rate with dedup off,
  measured interleaved (off, on, off, on, ...) over ROUNDS rounds: ratio min/median/max.

Also measured for docs/scaling.md: Redis memory per pending job and per finished job (before
purge), from ``INFO memory`` around 100,000 jobs; and per discovered job with a 600-byte
crawl config, stored once by reference (pages of 100 links sharing it) against the same jobs
each with a config of its own (kept in the job), 20,000 jobs each, in turn.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis import Redis

from _common import report
from scraperv4.queue import JobQueue, JobSpec
from support.redis_server import RedisServer

URLS = 1_000_000
FILL_BATCH = 10_000
ROUNDS = int(os.environ.get("BENCH_DEDUP_ROUNDS", "6"))
ROUND_JOBS = 20_000
BATCH = 100
MEMORY_JOBS = 100_000
DISCOVERED_JOBS = 20_000
LINKS_PER_PAGE = 100


def urls(prefix: str, first: int, count: int) -> list[JobSpec]:
    return [
        JobSpec(f"https://site{i % 997}.example/{prefix}/{i}?utm_source=bench", template_id="t")
        for i in range(first, first + count)
    ]


def fingerprint(url: str) -> str:
    """128 bits of hash as 32 hex characters (a SET member as big as our fingerprint)."""
    return hashlib.blake2b(url.encode(), digest_size=16).hexdigest()


def fill(url: str) -> dict[str, float]:
    """1 M distinct URLs into a filter sized for them; its memory against a SET's."""
    name = f"fill-{uuid.uuid4().hex[:6]}"
    queue = JobQueue(url, name=name, dedup=True, dedup_capacity=URLS, dedup_error_rate=0.01)
    false_positives = 0
    started = time.perf_counter()
    for first in range(0, URLS, FILL_BATCH):
        created = queue.submit_batch(urls("fill", first, FILL_BATCH)).created
        false_positives += created.count(False)
    elapsed = time.perf_counter() - started
    client = Redis.from_url(url)
    bloom = int(client.memory_usage(f"scraperv4:{{{name}}}:seen:all", samples=0) or 0)
    seen_set = f"bench-set-{name}"
    pipe = client.pipeline(transaction=False)
    for first in range(0, URLS, FILL_BATCH):
        members = [
            fingerprint(f"https://site{i % 997}.example/fill/{i}")
            for i in range(first, first + FILL_BATCH)
        ]
        pipe.sadd(seen_set, *members)
    pipe.execute()
    set_bytes = int(client.memory_usage(seen_set, samples=0) or 0)
    client.delete(seen_set)
    client.close()
    queue.close()
    return {
        "fill_seconds": elapsed,
        "false_positives": float(false_positives),
        "bloom_bytes": float(bloom),
        "set_bytes": float(set_bytes),
    }


def server_cpu(url: str) -> float:
    """The redis-server's CPU seconds so far."""
    client = Redis.from_url(url)
    cpu = client.info("cpu")
    client.close()
    return float(cpu["used_cpu_user"] + cpu["used_cpu_sys"])


def throughput(url: str) -> dict[str, list[float]]:
    """Submit jobs/s with dedup off and on, in turn, ROUNDS times, and the server's CPU per
    job of each (``off_cpu``, ``on_cpu``, µs): what dedup costs Redis, apart from the
    client."""
    off = JobQueue(url, name=f"off-{uuid.uuid4().hex[:6]}")
    on = JobQueue(url, name=f"on-{uuid.uuid4().hex[:6]}", dedup=True)
    rates: dict[str, list[float]] = {"off": [], "on": [], "off_cpu": [], "on_cpu": []}
    for round_ in range(ROUNDS):
        for name, queue in (("off", off), ("on", on)):
            specs = urls(f"{name}{round_}", 0, ROUND_JOBS)
            cpu_before = server_cpu(url)
            started = time.perf_counter()
            created = 0
            for offset in range(0, ROUND_JOBS, BATCH):
                created += sum(queue.submit_batch(specs[offset : offset + BATCH]).created)
            rates[name].append(ROUND_JOBS / (time.perf_counter() - started))
            rates[f"{name}_cpu"].append((server_cpu(url) - cpu_before) / ROUND_JOBS * 1e6)
            assert created >= ROUND_JOBS * 0.98, f"{name}: {created} of {ROUND_JOBS} new"
    off.close()
    on.close()
    return rates


def job_memory(url: str) -> dict[str, float]:
    """Redis bytes per pending job and per finished job (completed, not yet purged)."""
    client = Redis.from_url(url)

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    queue = JobQueue(url, name=f"mem-{uuid.uuid4().hex[:6]}")
    before = used()
    specs = urls("mem", 0, MEMORY_JOBS)
    for offset in range(0, MEMORY_JOBS, 1000):
        queue.submit_many(specs[offset : offset + 1000])
    pending = used()
    done = 0
    while claimed := queue.claim("bench-worker", 1000):
        done += sum(ack.accepted for ack in queue.complete_many(claimed))
    assert done == MEMORY_JOBS
    finished = used()
    purged = queue.purge(0)
    after = used()
    client.close()
    queue.close()
    return {
        "pending_job_bytes": (pending - before) / MEMORY_JOBS,
        "finished_job_bytes": (finished - before) / MEMORY_JOBS,
        "after_purge_bytes": (after - before) / MEMORY_JOBS,
        "purged": float(purged),
    }


def crawl_config(salt: str) -> str:
    """A crawl's config of about 600 bytes (headers, limits, template options)."""
    headers = {f"X-Header-{i}": f"value-{salt}-{i}-" + "v" * 30 for i in range(8)}
    return json.dumps({"headers": headers, "max_depth": 3, "revisit": 86400, "salt": salt})


def discovered_memory(url: str) -> dict[str, float]:
    """Redis bytes per discovered job: its crawl's config shared by reference (every page of
    LINKS_PER_PAGE links has the crawl's config) against one config per job (kept in it)."""
    client = Redis.from_url(url)

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    out: dict[str, float] = {}
    for kind in ("shared", "own"):
        queue = JobQueue(url, name=f"disc-{kind}-{uuid.uuid4().hex[:6]}")
        before = used()
        for page in range(DISCOVERED_JOBS // LINKS_PER_PAGE):
            specs = [
                JobSpec(
                    f"https://site{i % 997}.example/d/{page}/{i}",
                    template_id="t",
                    crawl_id="crawl",
                    parent_id=f"page-{page}",
                    depth=1,
                    config=json.loads(crawl_config("c" if kind == "shared" else f"{page}.{i}")),
                )
                for i in range(LINKS_PER_PAGE)
            ]
            queue.submit_batch(specs)
        out[kind] = (used() - before) / DISCOVERED_JOBS
        queue.close()
    client.close()
    out["config_bytes"] = float(len(crawl_config("c")))
    return out


def main() -> int:
    with RedisServer() as server:
        load = os.getloadavg()[0]
        filled = fill(server.url)
        rates = throughput(server.url)
        memory = job_memory(server.url)
        discovered = discovered_memory(server.url)
    ratios = [on / off for on, off in zip(rates["on"], rates["off"])]
    per_url = filled["bloom_bytes"] / URLS
    set_per_url = filled["set_bytes"] / URLS
    figures = {
        "false-positive rate at 1 M (%)": filled["false_positives"] / URLS * 100,
        "fill: 1 M URLs in batches of 10,000 (s)": filled["fill_seconds"],
        "filter MEMORY USAGE at 1 M (bytes)": int(filled["bloom_bytes"]),
        "filter bytes per URL (1 M; 10 M the same)": per_url,
        "filter at 10 M, extrapolated (MB)": per_url * 10_000_000 / 1e6,
        "SET of 1 M fingerprints (bytes)": int(filled["set_bytes"]),
        "SET bytes per URL": set_per_url,
        "submit jobs/s dedup off, median": statistics.median(rates["off"]),
        "submit jobs/s dedup on, median": statistics.median(rates["on"]),
        "server CPU per job, dedup off (us, median)": statistics.median(rates["off_cpu"]),
        "server CPU per job, dedup on (us, median)": statistics.median(rates["on_cpu"]),
        "on/off ratio min": min(ratios),
        "on/off ratio median": statistics.median(ratios),
        "on/off ratio max": max(ratios),
        "rounds (off, on interleaved), jobs per round": (
            f"{ROUNDS}, {ROUND_JOBS} in batches of {BATCH}"
        ),
        "on/off ratios": ", ".join(f"{r:.3f}" for r in ratios),
        "Redis bytes per pending job": memory["pending_job_bytes"],
        "Redis bytes per finished job (before purge)": memory["finished_job_bytes"],
        "Redis bytes per job left after purge": memory["after_purge_bytes"],
        "discovered job, config shared by reference (bytes)": discovered["shared"],
        "discovered job, config of its own (bytes)": discovered["own"],
        "crawl config size (bytes)": discovered["config_bytes"],
        "saved per discovered job (bytes)": discovered["own"] - discovered["shared"],
        "load average at start (1 min)": load,
    }
    goals = {
        "filter <= 2 bytes per URL (2 / bytes)": (2.0 / per_url, 1.0),
        "filter vs SET (>= 20x smaller)": (set_per_url / per_url, 20.0),
        "false-positive rate <= 1 % (1 / rate)": (
            0.01 / max(filled["false_positives"] / URLS, 1e-9),
            1.0,
        ),
        "submit with dedup on >= 90 % (median ratio / 0.9)": (
            statistics.median(ratios) / 0.9,
            1.0,
        ),
    }
    return 0 if report("dedup", figures, goals) else 1


if __name__ == "__main__":
    sys.exit(main())
