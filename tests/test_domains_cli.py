"""`scraperv4 domains` and the politeness lines of `scraperv4 stats`, run as a user runs them
(subprocesses) against a real redis-server and a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scraperv4.queue import JobQueue

CLI = [sys.executable, "-m", "scraperv4"]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def ok(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def table_rows(stdout: str) -> list[list[str]]:
    """The table's body: each line split on runs of two or more spaces."""
    import re

    lines = stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["KEY", "WAITING"], stdout
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def busy_queue(url: str) -> JobQueue:
    """Three paced keys: busy.example (30 waiting, 2 in flight), slow.example (5 waiting, a
    429 with Retry-After), rare.example (1 waiting, a failed request); plus unpaced jobs."""
    queue = JobQueue(url)
    queue.set_domain("busy.example", concurrency=2)
    queue.set_domain("slow.example", delay=3)
    queue.set_domain("rare.example", delay=0.5)
    queue.submit_many({"target_url": f"https://www.busy.example/{i}"} for i in range(32))
    queue.submit_many({"target_url": f"https://slow.example/{i}"} for i in range(6))
    queue.submit_many({"target_url": f"https://rare.example/{i}"} for i in range(2))
    queue.submit_many({"target_url": f"https://free{i}.example/"} for i in range(4))
    queue.register_worker("w")
    claimed = queue.claim("w", 50)
    by_key: dict[str, list[object]] = {}
    for job in claimed:
        by_key.setdefault(queue.politeness_key(job.target_url), []).append(job)
    assert len(by_key["busy.example"]) == 2, "its limit"
    assert len(by_key["slow.example"]) == 1 and len(by_key["rare.example"]) == 1, "one per delay"
    queue.fail(by_key["slow.example"][0], "HTTP 429", feedback="throttled", retry_after=60)
    queue.fail(by_key["rare.example"][0], "connection refused", feedback="error")
    return queue


def test_domains_list_sorts_limits_and_prints_json(durable_queue_url: str) -> None:
    url = durable_queue_url
    empty = run_cli("domains", "list", "--queue", url)
    assert empty.returncode == 0 and empty.stdout == ""
    assert "no key needs pacing" in empty.stderr

    queue = busy_queue(url)
    done = run_cli("domains", "list", "--queue", url)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert [r[0] for r in rows] == ["busy.example", "slow.example", "rare.example"], rows
    busy = dict(zip(["key", "waiting", "inflight", "delay", "limit"], rows[0]))
    assert busy == {
        "key": "busy.example", "waiting": "30", "inflight": "2", "delay": "-", "limit": "2",
    }, rows[0]  # fmt: skip
    assert rows[0][5] == "at limit", "ready when one of its two jobs in flight finishes"
    slow = rows[1]
    slow_now = queue.domain("slow.example")
    assert slow_now is not None and slow[1] == str(slow_now["waiting"]) and slow[2] == "0"
    assert slow[6] == "1/0" and slow[7].endswith("ago"), slow
    assert "x" in slow[8] and "d" in slow[8] and "p" in slow[8], "paused, override, paced"
    assert slow[5].endswith("s") and slow[5] != "now", "paused by the Retry-After"
    assert "3 keys shown" in done.stderr and "of 3" in done.stderr

    throttled = table_rows(ok("domains", "list", "--sort", "throttled", "--queue", url))
    assert [r[0] for r in throttled] == ["slow.example", "rare.example", "busy.example"], (
        "429s first, then failed requests, then the rest"
    )
    by_delay = table_rows(ok("domains", "list", "--sort", "delay", "--queue", url))
    assert by_delay[0][0] == "slow.example", "its delay doubled from 3 s"
    limited = table_rows(ok("domains", "list", "--sort", "key", "--limit", "2", "--queue", url))
    assert [r[0] for r in limited] == ["busy.example", "rare.example"]

    lines = ok("domains", "list", "--json", "--queue", url).splitlines()
    shown = [json.loads(line) for line in lines]
    assert [d["key"] for d in shown] == ["busy.example", "slow.example", "rare.example"]
    for d in shown:
        now = queue.domain(d["key"])
        assert now is not None
        assert {k: v for k, v in d.items() if k != "now"} == {
            k: v for k, v in now.items() if k != "now"
        }, "the JSON is the queue's DomainState"

    bad = run_cli("domains", "list", "--limit", "0", "--queue", url)
    assert bad.returncode == 2 and "--limit" in bad.stderr
    unknown = run_cli("domains", "list", "--sort", "nope", "--queue", url)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_domains_show_and_set_as_the_issue_writes_them(durable_queue_url: str) -> None:
    url = durable_queue_url
    queue = JobQueue(url)
    missing = run_cli("domains", "show", "example.com", "--queue", url)
    assert missing.returncode == 1 and "keeps no record of 'example.com'" in missing.stderr

    done = run_cli("domains", "set", "example.com", "--delay", "2", "--concurrency", "1",
                   "--queue", url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("example.com: delay 2s, concurrency 1\n"), done.stdout
    state = queue.domain("example.com")
    assert state is not None
    assert (state["delay_override"], state["concurrency_override"]) == (2.0, 1)
    assert (state["delay"], state["concurrency"], state["paced"]) == (2.0, 1, True)

    # Every worker sees it: two claims in a row get one job of the key.
    queue.submit_many({"target_url": f"https://www.example.com/{i}"} for i in range(3))
    queue.register_worker("w")
    assert len(queue.claim("w", 10)) == 1

    shown = ok("domains", "show", "example.com", "--queue", url)
    assert "delay override:       2s" in shown and "concurrency override: 1" in shown
    assert "in flight:            1" in shown and "waiting:              2 jobs" in shown
    by_url = run_cli("domains", "show", "https://www.example.com/a/b", "--json", "--queue", url)
    assert by_url.returncode == 0 and "-> key example.com" in by_url.stderr
    assert json.loads(by_url.stdout)["key"] == "example.com"

    ok("domains", "set", "example.com", "--no-delay", "--queue", url)
    state = queue.domain("example.com")
    assert state is not None
    assert (state["delay_override"], state["concurrency_override"]) == (None, 1), "kept"
    as_json = json.loads(
        ok("domains", "set", "example.com", "--concurrency", "0", "--json", "--queue", url)
    )
    assert as_json["concurrency_override"] == 0 and as_json["concurrency"] == 0, "no limit"
    ok("domains", "set", "example.com", "--no-concurrency", "--queue", url)
    state = queue.domain("example.com")
    assert state is not None and state["concurrency_override"] is None

    for args, says in [
        ((), "nothing to set"),
        (("--delay", "-1"), "--delay must be 0 to 86400"),
        (("--delay", "nan"), "--delay must be 0 to 86400"),
        (("--concurrency", "-2"), "--concurrency must be 0"),
        (("--delay", "1", "--no-delay"), "not allowed with argument"),
    ]:
        bad = run_cli("domains", "set", "example.com", *args, "--queue", url)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
    too_long = run_cli("domains", "set", "k" * 300, "--delay", "1", "--queue", url)
    assert too_long.returncode == 2 and "1 to 256 printable characters" in too_long.stderr


def test_domains_policy_shows_and_changes_the_queue_wide_settings(durable_queue_url: str) -> None:
    url = durable_queue_url
    queue = JobQueue(url)
    shown = ok("domains", "policy", "--queue", url)
    assert "domain_delay        -" in shown and "domain_concurrency  no limit" in shown
    assert "autothrottle        off" in shown

    changed = ok("domains", "policy", "--domain-delay", "0.5", "--domain-concurrency", "2",
                 "--queue", url)  # fmt: skip
    assert "domain_delay 0 -> 0.5 (from flag --domain-delay)" in changed, changed
    assert "domain_concurrency 0 -> 2 (from flag --domain-concurrency)" in changed
    policy = queue.policy()
    assert (policy["domain_delay"], policy["domain_concurrency"]) == (0.5, 2)

    from_env = run_cli("domains", "policy", "--queue", url, SCRAPERV4_AUTOTHROTTLE="4")
    assert from_env.returncode == 0, from_env.stderr
    assert "autothrottle 0 -> 4 (from environment variable SCRAPERV4_AUTOTHROTTLE)" in (
        from_env.stdout
    )
    as_json = json.loads(ok("domains", "policy", "--json", "--queue", url))
    assert as_json["domain_delay"] == 0.5 and as_json["autothrottle"] == 4.0
    assert "domain_delay unchanged" not in ok("domains", "policy", "--queue", url)

    bad = run_cli("domains", "policy", "--domain-delay", "-1", "--queue", url)
    assert bad.returncode == 2 and "domain_delay" in bad.stderr
    assert queue.policy()["domain_delay"] == 0.5, "nothing changed"
    no_queue = run_cli("domains", "policy", REDIS_URL="", SCRAPERV4_QUEUE_URL="")
    assert no_queue.returncode == 2 and "no queue given" in no_queue.stderr


def test_stats_shows_the_runnable_backlog_and_paced_keys(durable_queue_url: str) -> None:
    url = durable_queue_url
    queue = busy_queue(url)
    stats = queue.stats()
    assert stats.paced_keys == 3
    text = ok("stats", "--queue", url)
    import re

    match = re.search(r"^  runnable +(\d+) ", text, re.MULTILINE)
    assert match, text
    # busy.example is at its limit and slow.example paused for 60 s (past the 10 s horizon):
    # only rare.example's two jobs (one a retry) can start soon. Redis counts a due retry
    # before its key's pause is looked at, so slow.example's retry adds one once its
    # backoff has passed (docs/politeness.md, Limits).
    assert int(match.group(1)) <= 3 and stats.by_status["pending"] == 36, text
    assert "politeness: 3 paced keys" in text and "scraperv4 domains list" in text
    as_json = json.loads(ok("stats", "--json", "--queue", url))
    # slow.example waits out its Retry-After; rare.example's doubled delay (1 s) may have
    # passed since the stats above.
    assert as_json["paced_keys"] == 3 and 1 <= as_json["waiting_keys"] <= 3, as_json
    assert as_json["runnable"] < as_json["pending"], "jobs of paced keys are not all runnable"
