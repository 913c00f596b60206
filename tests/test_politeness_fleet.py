"""Fleet-wide politeness end to end (issue #13): four real ``scraperv4 worker`` processes
(concurrency 32 each) on a real redis-server, against sites on 127.0.0.1 ... 127.0.0.20 that
record when every request arrives. Each address is its own host, so its own politeness key.

What is measured at the sites, and how honestly:

- The queue books a key's slots with Redis's clock when jobs are *claimed*; a request
  *arrives* later by the time the worker takes to send it (the claim's reply, the task's
  start, the connection) — a few ms, more on a loaded machine, and not the same for every
  request. Two claims ``delay`` apart can therefore arrive a little closer. The tests check
  the claims exactly (``started_at`` of each job, Redis's clock: never closer than the
  delay) and the arrivals with a stated jitter bound (``JITTER``), and the count in any
  window with a tolerance of one request (a jitter below one delay moves at most one
  request into a window). The lateness of every request (arrival minus claim) is in the
  failure messages, so a failure can be told apart from an overloaded machine.
- Rates are asserted as lower bounds with a wide margin (a loaded 2-core CI machine), and
  waits are on conditions with generous deadlines; each test's own running time is bounded
  by its jobs (at most a few hundred requests, ~15 s of pacing).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from scraperv4.autoscale import Autoscaler, LocalExecutor
from scraperv4.queue import Job, JobQueue
from scraperv4.resources import ResourceManager
from support.politeness_fleet import Fleet, wait_for, write_templates
from support.sites import Arrival, Reply, Site, Sites, gaps, most_in_window

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Arrivals of claims ``delay`` apart may come this much closer (see the module docs).
JITTER = 0.25
#: A rate is asserted to reach at least this share of the ideal.
RATE_MARGIN = 0.6
NO_VETO = {"cpu_max": 100, "memory_max": 100, "disk_max": 100, "load_max": 1e6}


def page_jobs(site: Site, count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` jobs on ``site``; the path names the job, so arrivals map to jobs."""
    tag = site.host.replace(".", "-")
    return [
        {"id": f"{tag}-{i}", "template_id": "page", "target_url": f"{site.base}/job/{tag}-{i}"}
        for i in range(start, start + count)
    ]


def interleaved(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-robin over the groups (so every worker's first claims hold every site)."""
    out: list[dict[str, Any]] = []
    for i in range(max(len(g) for g in groups)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def completed(queue: JobQueue, count: int) -> bool:
    return queue.stats().by_status["completed"] >= count


def lateness(queue: JobQueue, arrivals: list[Arrival]) -> list[float]:
    """Per arrival, seconds from its job's claim (Redis clock) to its arrival at the site."""
    late = []
    for arrival in arrivals:
        job = queue.get(arrival.path.rsplit("/", 1)[-1])
        if job is not None and job.started_at is not None:
            late.append(arrival.wall - job.started_at)
    return late


def describe(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    return (
        f"n={len(ordered)} min={ordered[0]:.3f} median={statistics.median(ordered):.3f} "
        f"max={ordered[-1]:.3f}"
    )


def claim_times(jobs: list[Job]) -> list[float]:
    return sorted(j.started_at for j in jobs if j.started_at is not None)


@pytest.fixture
def sites() -> Iterator[Sites]:
    with Sites(20) as running:
        yield running


def start_fleet(redis_url: str, tmp_path: Path, *args: str) -> Fleet:
    return Fleet(redis_url, tmp_path, count=4, concurrency=32, args=args).start()


@pytest.mark.timeout(240)
def test_twenty_domains_at_two_per_second_hold_their_rate_and_fill_the_fleet(
    redis_url: str, tmp_path: Path, sites: Sites
) -> None:
    delay, per_site = 0.5, 30
    queue = JobQueue(redis_url)
    queue.set_policy(domain_delay=delay)
    fleet = start_fleet(redis_url, tmp_path, "--ignore-robots")
    try:
        fleet.wait_registered(queue)
        queue.submit_many(interleaved(*(page_jobs(s, per_site) for s in sites)))
        total = per_site * len(sites)
        wait_for(lambda: completed(queue, total), 150, f"{total} jobs completed")
    finally:
        fleet.stop()
    stats = queue.stats()
    assert stats.by_status["completed"] == total and stats.totals.retried == 0, stats

    everything = sites.arrivals()
    assert len(everything) == total, "every page fetched once"
    late = lateness(queue, everything)
    all_gaps = [g for s in sites for g in gaps(sites.arrivals(s.host))]
    span = everything[-1].at - everything[0].at
    print(  # the figures behind the assertions (pytest -rP shows them)
        f"gaps {describe(all_gaps)}; lateness {describe(late)}; "
        f"fleet {(len(everything) - 1) / span:.1f}/s over {span:.1f} s"
    )
    for site in sites:
        arrivals = sites.arrivals(site.host)
        assert len(arrivals) == per_site
        jobs = [
            j for j in queue.list("completed", limit=10_000) if j.target_url.startswith(site.base)
        ]
        claims = claim_times(jobs)
        # The queue's own bookkeeping, on its own clock (ms): never two claims within a delay.
        claim_gaps = [b - a for a, b in zip(claims, claims[1:])]
        assert min(claim_gaps) >= delay - 0.002, (site.host, describe(claim_gaps))
        # At the site: no two requests closer than the delay minus the jitter bound, and in
        # any 1 s window at most 2 (+1 for jitter); over 5 s at most 10 (+1).
        seen = gaps(arrivals)
        context = f"{site.host}: gaps {describe(seen)}; lateness {describe(late)}"
        assert min(seen) >= delay - JITTER, context
        assert most_in_window(arrivals, 1.0) <= 2 + 1, context
        assert most_in_window(arrivals, 5.0) <= 10 + 1, context
        # Nobody idled while this site was ready: it was served near its own rate.
        rate = (len(arrivals) - 1) / (arrivals[-1].at - arrivals[0].at)
        assert rate >= RATE_MARGIN / delay, f"{site.host} served at {rate:.2f}/s; {context}"
    # The fleet as a whole ran near 20 x 2/s.
    fleet_rate = (len(everything) - 1) / span
    ideal = len(sites) / delay
    assert fleet_rate >= RATE_MARGIN * ideal, (
        f"fleet rate {fleet_rate:.1f}/s, ideal {ideal:.0f}/s; lateness {describe(late)}"
    )


@pytest.mark.timeout(240)
def test_a_429_with_retry_after_pauses_its_site_for_the_fleet_and_no_other(
    redis_url: str, tmp_path: Path, sites: Sites
) -> None:
    delay, pause = 0.5, 5.0
    victim = sites[0]
    # The victim's third request is answered 429, Retry-After: 5; every other one 200.
    victim.respond = lambda _path, nth: Reply(429, (("Retry-After", "5"),)) if nth == 3 else Reply()
    queue = JobQueue(redis_url)
    queue.set_policy(domain_delay=delay)
    fleet = start_fleet(redis_url, tmp_path, "--ignore-robots")
    try:
        fleet.wait_registered(queue)
        others = [s for s in sites if s is not victim]
        queue.submit_many(interleaved(page_jobs(victim, 8), *(page_jobs(s, 24) for s in others)))
        total = 8 + 24 * len(others)
        wait_for(lambda: completed(queue, total), 150, f"{total} jobs completed")
    finally:
        fleet.stop()

    at_victim = sites.arrivals(victim.host, pages_only=False)
    throttled = [a for a in at_victim if a.status == 429]
    assert len(throttled) == 1, at_victim
    t429 = throttled[0].at
    after = [a for a in at_victim if a.at > t429]
    assert after, "the site was asked again after the pause"
    # Nothing at all (robots.txt included) for the Retry-After: the queue pauses the key from
    # the worker's report, which comes after the 429 was sent; its clock counts whole ms.
    quiet = after[0].at - t429
    assert quiet >= pause - 0.01, f"the site was asked again {quiet:.3f} s after its 429"
    info = queue.domain(victim.host)
    assert info is not None and info["throttled"] == 1, info
    # The other sites were not slowed while the victim was paused: each got near its 2/s.
    window = [a for a in sites.arrivals() if t429 <= a.at < t429 + pause and a.host != victim.host]
    expected = pause / delay
    print(f"quiet {quiet:.3f} s after the 429; others during the pause: {len(window)}")
    for site in others:
        count = sum(1 for a in window if a.host == site.host)
        assert count >= RATE_MARGIN * expected, (
            f"{site.host} got {count} requests during the pause (ideal {expected:.0f})"
        )


@pytest.mark.timeout(240)
def test_robots_crawl_delay_is_held_fleet_wide_and_robots_fetched_about_once(
    redis_url: str, tmp_path: Path, sites: Sites
) -> None:
    """Needs the fleet-wide robots.txt sharing (robots fetched once per origin per TTL for
    the fleet, its Crawl-delay reported to the queue)."""
    crawl_delay, count = 1.0, 12
    polite = sites[0]
    polite.robots = "User-agent: *\nCrawl-delay: 1\n"
    queue = JobQueue(redis_url)
    # Robots respected (the default); no delay of the queue's own: only Crawl-delay paces.
    fleet = start_fleet(redis_url, tmp_path)
    try:
        fleet.wait_registered(queue)
        others = [s for s in sites if s is not polite]
        # The polite site's jobs among many quick ones: every worker's first claims hold some.
        queue.submit_many(
            interleaved(page_jobs(polite, count), *(page_jobs(s, 20) for s in others))
        )
        total = count + 20 * len(others)
        wait_for(lambda: completed(queue, total), 150, f"{total} jobs completed")
    finally:
        fleet.stop()

    fetches = sites.robots_fetches(polite.host)
    info = queue.domain(polite.host)
    arrivals = sites.arrivals(polite.host)
    seen = gaps(arrivals)
    context = f"gaps {describe(seen)}; lateness {describe(lateness(queue, arrivals))}"
    print(f"robots.txt fetched {fetches} time(s); {context}; the queue's record: {info}")
    assert 1 <= fetches <= 2, f"robots.txt fetched {fetches} times by 4 workers (about once)"
    assert info is not None and info["crawl_delay"] == crawl_delay, info
    assert len(arrivals) == count
    assert min(seen) >= crawl_delay - JITTER, context
    assert most_in_window(arrivals, 5.0) <= 5 + 1, context


@pytest.mark.timeout(240)
def test_a_backlog_on_one_slow_domain_does_not_scale_the_fleet_up(
    redis_url: str, tmp_path: Path
) -> None:
    """10,000 jobs on one site limited to 1 request/s: the real autoscaler (its policy, the
    local executor) sees what can run — about one per second of the 10 s horizon — and keeps
    its one worker, from the moment the backlog appears (nothing claimed yet) on."""
    with Sites(1) as one:
        site = one[0]
        queue = JobQueue(redis_url)
        queue.set_domain(site.host, delay=1.0)
        templates = write_templates(tmp_path)
        executor = LocalExecutor(
            redis_url, str(templates), log_dir=str(tmp_path),
            worker_args=["--concurrency", "32", "--fixed-concurrency", "--allow-private-networks",
                         "--ignore-robots", "--fetch-retries", "0"],
        )  # fmt: skip
        config = {
            "min_workers": 1, "max_workers": 8, "scale_up_cooldown": 0,
            "scale_down_cooldown": 0, "evaluation_interval": 1,
        }  # fmt: skip
        decisions: list[dict[str, Any]] = []
        with ResourceManager(NO_VETO) as resources:
            scaler = Autoscaler(queue, executor, config, resources=resources, drain_timeout=10)
            try:
                queue.submit_many(page_jobs(site, 10_000))
                executor.scale_to(1)
                # The fleet's first look: one worker (still starting), the backlog untouched.
                decisions.append(scaler.evaluate())
                wait_for(lambda: queue.stats().active_workers >= 1, 60, "the worker")
                started = time.monotonic()
                # Then every 0.25 s for 6 s (cooldowns 0: a scale-up would happen at once).
                while time.monotonic() - started < 6:
                    decisions.append(scaler.evaluate())
                    time.sleep(0.25)
                workers_after = executor.workers()
                stats = queue.stats()
                ended = time.monotonic()
            finally:
                executor.close()
        arrivals = one.arrivals(site.host)
    summary = [(d["action"], d["runnable"], d["target_workers"]) for d in decisions]
    print(f"decisions (action, runnable, target): {summary}; {len(arrivals)} requests")
    assert not any(d["action"] == "scale_up" for d in decisions), summary
    assert workers_after == 1
    assert stats.by_status["pending"] >= 9_900, "the backlog is still there"
    # The one worker served the site, at its 1/s.
    assert arrivals, "the worker served the site"
    assert len(arrivals) <= ended - arrivals[0].at + 2, [a.at - arrivals[0].at for a in arrivals]


@pytest.mark.timeout(240)
def test_a_worker_killed_holding_a_sites_only_slot_blocks_it_no_longer_than_its_lease(
    redis_url: str, tmp_path: Path
) -> None:
    lease, heartbeat, reap_interval = 4.0, 1.0, 5.0
    with Sites(1) as one:
        site = one[0]
        # The first request is held (the worker holding the slot hangs on it); the rest answer.
        site.respond = lambda _path, nth: Reply(hold=30.0) if nth == 1 else Reply()
        queue = JobQueue(redis_url, lease=lease)
        queue.set_domain(site.host, concurrency=1)
        fleet = start_fleet(
            redis_url, tmp_path, "--ignore-robots", "--lease", str(lease),
            "--heartbeat", str(heartbeat),
        )  # fmt: skip
        try:
            fleet.wait_registered(queue)
            queue.submit_many(page_jobs(site, 5))
            wait_for(lambda: one.arrivals(site.host), 60, "the first request")

            def holder() -> Optional[str]:
                running = [j for j in queue.list("running") if j.target_url.startswith(site.base)]
                return running[0].assigned_worker if running else None

            owner = wait_for(holder, 30, "the job holding the slot")
            info = queue.domain(site.host)
            assert info is not None and info["inflight"] == 1, info
            # While its holder lives, nobody else sends the site anything (concurrency 1),
            # for two heartbeats (the lease is renewed).
            time.sleep(2 * heartbeat + 0.5)
            assert len(one.arrivals(site.host)) == 1
            killed = fleet.kill(owner)
            second = wait_for(
                lambda: one.arrivals(site.host)[1:], 60, "the site to be served again"
            )[0]
            wait_for(lambda: completed(queue, 5), 60, "every job completed")
        finally:
            one.release()
            fleet.stop()
    blocked = second.at - killed
    print(f"served again {blocked:.2f} s after the kill")
    # The slot comes back when the lease runs out (at most a lease after the last renewal)
    # and a live worker's reaper (every 5 s) sees it; a claim follows within the idle poll.
    bound = lease + reap_interval + 3.0
    assert blocked <= bound, f"the site was blocked {blocked:.1f} s after the kill (bound {bound})"
    assert len(one.arrivals(site.host)) == 6, "5 jobs, the held one sent twice"
