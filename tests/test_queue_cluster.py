"""The queue on a real 6-node Redis Cluster (3 masters, 3 replicas on loopback).

The conformance suite runs on a cluster too (``tests/test_queue.py``, backend "cluster");
here: a crawl that goes on while ``redis-cli --cluster reshard`` moves the queue's slot to
another master and ``CLUSTER FAILOVER`` then hands it to that master's replica — nothing
lost, nothing recorded twice — and the URLs and errors of cluster mode.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from scraperv4.demo import DemoSite
from scraperv4.exceptions import ConfigError, QueueUnavailableError
from scraperv4.queue import JobQueue
from scraperv4.worker import export_jsonl
from support.crawl import run_workers, seed
from support.redis_cluster import RedisCluster, name_in_first_slots, wait_for
from support.redis_server import free_port
from support.tcp_proxy import TcpProxy


def test_a_crawl_survives_a_slot_migration_and_a_failover(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    # The queue's slot is among the first of the master serving slot 0: the reshard below
    # moves exactly those slots.
    name = name_in_first_slots(0, 10)
    slot = key_slot(name.encode())
    source = cluster.master_of(slot)
    target = cluster.master_of(10_000)
    assert target != source
    queue = JobQueue(cluster.url, name=name, lease=5.0, operation_timeout=60.0)
    with DemoSite(categories=12, products_per_category=25, page_size=5, latency=0.1) as site:
        seed(queue, [site])
        marks: list[int] = []

        def migrate_and_fail_over() -> None:
            done = lambda: queue.stats().by_status["completed"]  # noqa: E731
            wait_for(lambda: done() >= 20, "the crawl to get going", timeout=120)
            marks.append(done())
            cluster.reshard(source, target, 10)
            # (Nodes other than the two learn of the move by gossip.)
            wait_for(lambda: cluster.master_of(slot) == target, "every node to see the move")
            marks.append(done())
            new_master = cluster.failover(target)
            assert cluster.master_of(slot) == new_master != target
            marks.append(done())
            print(f"completed: {marks[0]} at the reshard, {marks[1]} after it, {marks[2]} "
                  f"after the failover, of {site.page_count}")  # fmt: skip
            assert marks[2] < site.page_count, (
                f"the crawl ({site.page_count} pages) ended before the failover: make it longer"
            )

        outcomes = run_workers(queue, 2, concurrency=2, during=migrate_and_fail_over)
        assert all(isinstance(o, dict) for o in outcomes.values()), outcomes
        page_hits = {path: n for path, n in site.hits.items() if path != "/robots.txt"}

    stats = queue.stats()
    assert stats.by_status["completed"] == site.page_count, (stats, marks)
    assert stats.total == site.page_count, "no page queued twice"
    assert (
        sum(stats.by_status[s] for s in ("pending", "assigned", "running", "retrying", "failed"))
        == 0
    )
    assert len(page_hits) == site.page_count, "every page fetched"
    # Every job's items were recorded once: one results entry per completed job.
    out = tmp_path / "items.jsonl"
    export_jsonl(queue, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True)
    entries = client.xrange(f"scraperv4:{{{name}}}:results")
    per_job = Counter(fields["job"] for _, fields in entries)
    # (Listing pages give no items: one entry per product page, 12 x 25 of them.)
    assert set(per_job.values()) == {1}, per_job.most_common(3)
    assert len(per_job) == len(records) == 300
    assert len({json.dumps(r, sort_keys=True) for r in records}) == 300, "no item twice"


def test_cluster_urls_and_errors(cluster: RedisCluster) -> None:
    node = cluster.nodes[0].port
    with pytest.raises(ConfigError, match=r"redis\+cluster://"):
        JobQueue(f"redis://127.0.0.1:{node}/0", name="single")
    with pytest.raises(ConfigError, match="one or more nodes"):
        JobQueue("redis+cluster:///0")
    with pytest.raises(QueueUnavailableError):
        JobQueue(f"redis+cluster://127.0.0.1:{free_port()}", operation_timeout=2.0)

    # Seeds may be any nodes (a replica too); the queue finds the slot's master.
    queue = JobQueue(f"redis+cluster://127.0.0.1:{cluster.nodes[-1].port}", name="anywhere")
    ids = queue.submit_many([{"target_url": f"https://example.com/{i}"} for i in range(5)])
    assert [j.id for j in queue.claim("w", 5)] == ids

    # A master that lost the library (FUNCTION FLUSH) gets it again on the next call.
    for master in {cluster.master_of(s) for s in (0, 8000, 16000)}:
        cluster.client(master).function_flush()
    assert queue.stats().by_status["assigned"] == 5


def test_a_call_waits_while_the_slot_migrates(cluster: RedisCluster) -> None:
    """While the queue's slot is MIGRATING, every call is refused before it writes anything
    (the keys it would write first are still on the old node), waits, and goes through once
    the slot is settled; past the operation timeout it is a transient error."""
    name = name_in_first_slots(0, 10, prefix="m")
    slot = key_slot(name.encode())
    source = cluster.master_of(slot)
    target = cluster.master_of(10_000)
    queue = JobQueue(cluster.url, name=name, operation_timeout=1.5)
    ids = queue.submit_many([{"target_url": f"https://example.com/{i}"} for i in range(6)])
    # The worker, its lease set and the counters exist: a claim's first writes (the worker's
    # heartbeat, the counts) would succeed on the old node.
    first = queue.claim("w", 1)
    assert len(first) == 1
    src, dst = cluster.client(source), cluster.client(target)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", cluster.node_id(source))
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", cluster.node_id(target))
    # Half the job records moved (and only they): a call that ran now would see half the queue.
    keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
    jobs = sorted(k for k in keys if ":job:" in k)
    assert len(jobs) == 6
    src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *jobs[:3])
    left = sorted(src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000))
    before = {key: src.dump(key) for key in left}
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError, match="non local key"):
        queue.claim("w", 5)
    assert time.monotonic() - started >= 1.0, "it waited for the slot to settle"
    assert {key: src.dump(key) for key in left} == before, "nothing written on the old node"

    def finish_migration() -> None:
        time.sleep(0.5)
        rest = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        if rest:
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *rest)
        for node in cluster.nodes:
            with contextlib.suppress(redis.ResponseError):  # a replica answers for its master
                cluster.client(node.port).execute_command(
                    "CLUSTER SETSLOT", slot, "NODE", cluster.node_id(target)
                )

    mover = threading.Thread(target=finish_migration)
    mover.start()
    # Opening a queue waits too (its first call is the upgrade check).
    slow = JobQueue(cluster.url, name=name, operation_timeout=30.0)
    claimed = slow.claim("w", 5)
    mover.join(timeout=30)
    # The refused claims wrote nothing: the one that went through found the 5 jobs pending.
    assert sorted(j.id for j in first + claimed) == sorted(ids), "it went through on the new master"
    assert cluster.master_of(slot) == target
    stats = slow.stats()
    assert (stats.total, stats.by_status["assigned"], stats.by_status["pending"]) == (6, 6, 0)
    assert {j.attempt for j in claimed} == {1}, "each job claimed once"


def test_a_call_whose_connection_drops_after_it_ran_is_not_sent_again(
    cluster: RedisCluster,
) -> None:
    """A claim the master ran whose answer was lost with its connection fails (the worker
    backs off) instead of being sent again by the cluster client: sent again it would lease
    a second job nobody holds."""
    name = name_in_first_slots(0, 10, prefix="d")
    master = cluster.master_of(key_slot(name.encode()))
    with TcpProxy(master) as proxy:
        # Every client now reaches that master through the proxy.
        admin = cluster.client(master)
        admin.config_set("cluster-announce-bus-port", master + 10000)
        admin.config_set("cluster-announce-port", proxy.port)
        address = f"127.0.0.1:{proxy.port}"
        wait_for(
            lambda: all(address in cluster.nodes_view(node.port) for node in cluster.nodes),
            "every node to see the master at the proxy's port",
        )
        queue = JobQueue(cluster.url, name=name, operation_timeout=30.0)
        queue.submit_many([{"target_url": f"https://example.com/{i}"} for i in range(3)])
        proxy.set_latency(1.0)  # each way: the answer is on its way back for a second
        outcome: list[object] = []
        claimer = threading.Thread(target=lambda: outcome.append(_claim_one(queue)))
        claimer.start()
        # The master ran the claim (read directly, not through the proxy); its answer is
        # still on its way back through the proxy: cut the connection now.
        counts = f"scraperv4:{{{name}}}:counts"
        wait_for(lambda: int(admin.hget(counts, "assigned") or 0) == 1, "the claim to run")
        assert proxy.cut() >= 1
        claimer.join(timeout=60)
        proxy.set_latency(0.0)
        assert isinstance(outcome[0], QueueUnavailableError), outcome
        stats = queue.stats()
        assert stats.by_status["assigned"] == 1, "the claim ran once"
        admin.config_set("cluster-announce-port", 0)


def _claim_one(queue: JobQueue) -> object:
    try:
        return queue.claim("w", 1)
    except QueueUnavailableError as error:
        return error
