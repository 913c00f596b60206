"""A queue spread over several shards (hash tags): on one real redis-server, and on a real
6-node Redis Cluster with its shards on the three masters — through a failover mid-crawl.

The conformance suite runs on a sharded queue too (``tests/test_queue.py``, backend
"sharded"); here the jobs spread over the shards, and what only a sharded queue does.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from scraperv4.demo import DemoSite
from scraperv4.exceptions import ConfigError
from scraperv4.queue import JobQueue, JobSpec
from scraperv4.worker import export_jsonl
from support.crawl import run_workers, seed
from support.redis_cluster import RedisCluster, wait_for
from support.redis_server import RedisServer


def site_spec(n: int, sites: int = 60) -> JobSpec:
    return JobSpec(f"https://site{n % sites}.example/p/{n}", template_id="t", id=f"j{n}")


def shard_of_keys(client: redis.Redis, name: str) -> dict[str, str]:
    """Job id -> the hash tag of the shard of queue ``name`` whose keys hold its record."""
    found = {}
    for key in client.scan_iter(f"scraperv4:{{{name}*}}:job:*", count=1000):
        tag, _, job_id = key.partition("}:job:")
        found[job_id] = tag.split("{", 1)[1]
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_a_queue_keeps_the_shards_it_was_created_with(server: RedisServer, tmp_path: Path) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    queue = JobQueue(server.url, name=name, shards=3)
    assert queue.shards == 3
    assert JobQueue(server.url, name=name).shards == 3, "clients read the stored layout"
    assert JobQueue(server.url, name=name, shards=3).shards == 3
    for other in (1, 2, 4):
        with pytest.raises(ConfigError, match="3, the number of shards"):
            JobQueue(server.url, name=name, shards=other)
    # A queue used before is not given shards (its jobs' keys would be paced twice, its
    # clients would go on using one shard as the whole queue, its generations would be
    # handed out again by the new shards' counters).
    plain = f"p{uuid.uuid4().hex[:8]}"
    JobQueue(server.url, name=plain).submit(site_spec(0))
    with pytest.raises(ConfigError, match=r"never used before \(jobs were submitted"):
        JobQueue(server.url, name=plain, shards=2)
    assert JobQueue(server.url, name=plain).shards == 1
    staffed = f"w{uuid.uuid4().hex[:8]}"
    JobQueue(server.url, name=staffed).register_worker("early")
    with pytest.raises(ConfigError, match="workers are registered"):
        JobQueue(server.url, name=staffed, shards=2)
    emptied = f"e{uuid.uuid4().hex[:8]}"
    used = JobQueue(server.url, name=emptied)
    used.submit(site_spec(0))
    used.complete(used.claim("w")[0])
    assert used.purge(older_than=0) == 1 and used.stats().total == 0
    with pytest.raises(ConfigError, match="jobs were submitted"):
        JobQueue(server.url, name=emptied, shards=2)
    for url in ("memory://", f"sqlite://{tmp_path / 'q.db'}"):
        with pytest.raises(ConfigError, match="shards"):
            JobQueue(url, shards=2)
        assert JobQueue(url, shards=1).shards == 1
    for bad in (0, 257):
        with pytest.raises(ConfigError, match="shards"):
            JobQueue(server.url, name=f"x{bad}", shards=bad)
    # A layout that is not one this version wrote is refused, not guessed at.
    client = redis.Redis.from_url(server.url, decode_responses=True)
    broken = f"b{uuid.uuid4().hex[:8]}"
    client.set(
        f"scraperv4:{{{broken}}}:shards",
        json.dumps({"bases": ["elsewhere:{x}", "y"], "politeness_key": "domain"}),
    )
    client.close()
    with pytest.raises(ConfigError, match="shard layout"):
        JobQueue(server.url, name=broken)


def test_a_client_that_opened_the_queue_before_it_had_shards_is_stopped(
    server: RedisServer, tmp_path: Path
) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    early = JobQueue(server.url, name=name)  # opened while the queue had no shards
    assert early.shards == 1
    sharded = JobQueue(server.url, name=name, shards=3)
    sharded.submit_many([site_spec(n) for n in range(30)])
    # Its next call is refused before it reads or writes anything (it would claim one shard
    # as if it were the whole queue).
    for call in (
        lambda: early.claim("w", 10),
        lambda: early.submit(site_spec(99)),
        lambda: early.register_worker("w"),
        early.stats,
        lambda: early.get("j1"),  # reads too: one shard's jobs or results are not all
        lambda: export_jsonl(early, tmp_path / "early.jsonl"),
    ):
        with pytest.raises(ConfigError, match="opened again"):
            call()
    assert sharded.stats().pending == 30
    assert JobQueue(server.url, name=name).claim("w", 100) != [], "opened again, it works"
    # Clients must make politeness keys alike: jobs are routed by them.
    with pytest.raises(ConfigError, match="politeness_key"):
        JobQueue(server.url, name=name, politeness_key="host")


def test_jobs_spread_by_key_and_every_one_is_claimed_once(server: RedisServer) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    queue = JobQueue(server.url, name=name, shards=3)
    specs = [site_spec(n) for n in range(600)]
    ids = queue.submit_many(specs)
    assert len(set(ids)) == 600
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        where = shard_of_keys(client, name)
    finally:
        client.close()
    assert len(where) == 600
    per_shard = Counter(where.values())
    assert set(per_shard) == {name, f"{name}/1", f"{name}/2"}, per_shard
    assert min(per_shard.values()) >= 60, f"a shard got few of 60 sites' jobs: {per_shard}"
    sites: dict[str, set[str]] = {}
    for spec in specs:
        site = spec.target_url.split("/")[2]
        sites.setdefault(site, set()).add(where[str(spec.id)])
    assert all(len(tags) == 1 for tags in sites.values()), "a site's jobs share one shard"

    stats = queue.stats()
    assert stats.pending == 600 and stats.total == 600
    claimed: list[Any] = []
    for round_ in range(400):
        batch = queue.claim(f"w{round_ % 3}", 7)
        if not batch:
            break
        claimed.extend(batch)
    assert sorted(job.id for job in claimed) == sorted(ids), "every job claimed exactly once"
    assert len({job.token for job in claimed}) == 600, "tokens are unique queue-wide"
    # A token names its shard: a finish with another shard's number is refused.
    job = claimed[0]
    assert not queue.complete(job, token=job.token + 1).accepted
    assert queue.get(job.id).status.value == "assigned"  # type: ignore[union-attr]
    acks = queue.complete_many(claimed, [{"n": i} for i in range(len(claimed))])
    assert all(ack.accepted for ack in acks)
    stats = queue.stats()
    assert stats.by_status["completed"] == 600 and stats.totals.completed == 600
    assert queue.recount_by_scan()["completed"] == 600
    fetched = queue.get(claimed[5].id)
    assert fetched is not None and fetched.token == claimed[5].token
    assert fetched.result == {"n": 5}
    assert len(queue.list("completed", limit=1000)) == 600
    assert len(queue.list("completed", offset=590, limit=50)) == 10


def test_workers_heartbeat_and_release_on_every_shard(server: RedisServer) -> None:
    queue = JobQueue(server.url, name=f"s{uuid.uuid4().hex[:8]}", shards=3, lease=30)
    queue.submit_many([site_spec(n) for n in range(90)])
    queue.register_worker("w")
    held = queue.claim("w", 30)
    assert len(held) == 30
    beat = queue.heartbeat("w", held=[(j.id, j.token) for j in held])
    assert beat.renewed == 30 and beat.lost == [] and beat.released == 0
    # Ten claims the worker no longer lists go back, whichever shard holds them.
    beat = queue.heartbeat("w", held=[(j.id, j.token) for j in held[10:]])
    assert beat.renewed == 20 and beat.released == 10
    # A claim that stopped being the worker's (cancelled by hand) is reported lost, with the
    # token the worker holds.
    gone = held[10]
    assert queue.cancel(gone.id).accepted
    beat = queue.heartbeat("w", held=[(j.id, j.token) for j in held[10:]])
    assert beat.renewed == 19
    assert beat.lost == [(gone.id, gone.token)]
    [worker] = queue.workers()
    assert worker["id"] == "w" and len(worker["jobs"]) == 19
    assert queue.drain("w") and queue.unregister_worker("w") == 19
    stats = queue.stats()
    assert stats.pending == 89 and stats.by_status["cancelled"] == 1


def crawl(queue: JobQueue, sites: list[DemoSite], workers: int, during: Any = None) -> None:
    seed(queue, sites)
    outcomes = run_workers(queue, workers, concurrency=4, during=during)
    assert all(isinstance(o, dict) for o in outcomes.values()), outcomes


def demo_sites(stack: ExitStack, hosts: int, **shape: Any) -> list[DemoSite]:
    """Demo sites on 127.0.0.1, 127.0.0.2, ... (one politeness key each)."""
    return [
        stack.enter_context(DemoSite(host=f"127.0.0.{i}", **shape)) for i in range(1, hosts + 1)
    ]


def check_crawl(queue: JobQueue, sites: list[DemoSite], tmp_path: Path) -> None:
    pages = sum(site.page_count for site in sites)
    stats = queue.stats()
    assert stats.by_status["completed"] == pages, stats
    assert stats.total == pages, "no page queued twice"
    for site in sites:
        hits = {path: n for path, n in site.hits.items() if path != "/robots.txt"}
        assert len(hits) == site.page_count, f"every page of {site.url} fetched"
    out = tmp_path / "items.jsonl"
    written = export_jsonl(queue, out, trim=True)
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == len(items) == sum(site.expected_items for site in sites)
    skus = Counter((item["url"].split("/")[2], item["fields"]["sku"]) for item in items)
    assert max(skus.values()) == 1, "no item recorded twice"
    assert export_jsonl(queue, out) == 0, "the merged logs' cursor resumes where it stopped"


def test_a_crawl_of_four_hosts_on_three_shards(server: RedisServer, tmp_path: Path) -> None:
    queue = JobQueue(server.url, name=f"s{uuid.uuid4().hex[:8]}", shards=3)
    with ExitStack() as stack:
        sites = demo_sites(stack, 4, categories=3, products_per_category=12, page_size=4)
        crawl(queue, sites, workers=2)
        check_crawl(queue, sites, tmp_path)


def test_an_export_notices_a_shard_log_rolled_back_under_its_cursor(
    server: RedisServer, tmp_path: Path
) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    queue = JobQueue(server.url, name=name, shards=3)
    with ExitStack() as stack:
        sites = demo_sites(stack, 8, categories=1, products_per_category=4, page_size=4)
        crawl(queue, sites, workers=1)
    out = tmp_path / "items.jsonl"
    first = export_jsonl(queue, out)
    assert first == sum(site.expected_items for site in sites)
    # A shard's log as a replica that lagged would leave it after a failover: the entries
    # the export read are gone, and a new one sits below the export's position. (Not the
    # shard of the newest entry, which the export's cursor names: the others' positions are
    # what a reader could overlook.)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        last = {}
        for tag in (name, f"{name}/1", f"{name}/2"):
            newest = client.xrevrange(f"scraperv4:{{{tag}}}:results", count=1)
            if newest:
                last[tag] = tuple(int(part) for part in newest[0][0].split("-"))
        assert len(last) >= 2, f"8 sites cover at least two shards: {last}"
        log = f"scraperv4:{{{min(last, key=lambda tag: last[tag])}}}:results"
        client.delete(log)
        record = {"url": "http://127.0.0.9/late", "fields": {"sku": "late"}}
        client.xadd(log, {"job": "late", "gen": "1", "records": json.dumps([record])}, id="1-1")
    finally:
        client.close()
    assert export_jsonl(queue, out) == 1, "the entry below the cursor is read, not skipped"
    assert len(out.read_text().splitlines()) == first + 1


def test_shards_spread_over_the_masters_and_a_crawl_survives_a_failover(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    queue = JobQueue(cluster.url, name=name, shards=3, lease=5.0, operation_timeout=60.0)
    client = cluster.client(cluster.master_of(key_slot(name.encode())))
    try:
        layout = json.loads(str(client.get(f"scraperv4:{{{name}}}:shards")))["bases"]
    finally:
        client.close()
    assert len(layout) == 3 and layout[0] == f"scraperv4:{{{name}}}"
    masters = [cluster.master_of(key_slot(base.encode())) for base in layout]
    assert len(set(masters)) == 3, f"the shards share masters: {layout} on {masters}"

    with ExitStack() as stack:
        sites = demo_sites(
            stack, 4, categories=4, products_per_category=15, page_size=5, latency=0.05
        )
        pages = sum(site.page_count for site in sites)

        def failover() -> None:
            done = lambda: queue.stats().by_status["completed"]  # noqa: E731
            wait_for(lambda: done() >= 30, "the crawl to get going", timeout=120)
            promoted = cluster.failover(masters[1])
            assert promoted != masters[1]
            assert done() < pages, "the crawl ended before the failover: make it longer"

        crawl(queue, sites, workers=2, during=failover)
        check_crawl(queue, sites, tmp_path)
