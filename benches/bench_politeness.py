"""What fleet-wide politeness (issue #13) costs a queue with nothing to throttle.

The batched lifecycle of ``bench_queue.py`` (submit 100 jobs per call, then claim 100 /
``complete_many`` until empty), run by this build and by the build just before the
politeness core (the parent of the first "Politeness (#13) core" commit) in the same run,
on the same redis-server, in separate processes interleaved A B, B A, ... (the machine's
speed drifts; each round compares like with like). Cases:

- 10,000 distinct domains, no delays (every job's key different, none throttled);
- 1 domain, no delays (every job the same key);
- paced, for information (this build only): a queue-wide ``domain_concurrency`` of 1 over
  the 10,000 domains — every key is tracked and parked, every claim books slots;
- the same on SQLite (a file, default durability), 10,000 domains and 1 domain.

Each run reports the whole lifecycle (submit + claim + complete, the ~26k jobs/s figure of
``bench_queue.py``) and the claim + complete part alone, in jobs/s and in CPU time per job
(the child process plus the redis-server, ``INFO cpu``: a figure that other programs
competing for the CPUs hardly change, the cross-check of the wall-clock figures on a loaded
machine). Goal (issue #13): this build at >= 80 % of the earlier one's jobs/s, on Redis, for
10,000 domains and for 1 domain — checked on both figures, on the median of the rounds'
ratios (each round's two runs back to back); the spread (min-max) is reported. Also counted
once per build and case (not timed): what one ``claim`` of 100 costs in round trips (script
calls sent by the client) and in Redis commands (``INFO commandstats``: a script's own
commands are counted there too).

The earlier build: ``--baseline-python PY`` or ``SCRAPERV4_BASELINE_PYTHON`` names an
interpreter that has it installed; otherwise it is built here once (``git archive`` of that
commit, ``maturin build --release`` under ``nice``, a venv) into
``target/bench-baseline/<commit>/`` — 10+ minutes the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from _common import report, spread  # noqa: E402

BATCH = 100
REDIS_JOBS = 50_000
SQLITE_JOBS = 20_000
DOMAINS = 10_000
COUNT_JOBS = 10_000
GOAL = 0.8
CASES = ("10k-domains", "1-domain", "paced")


def url_of(case: str, i: int) -> str:
    if case == "1-domain":
        return f"https://example.com/p/{i}"
    return f"https://site{i % DOMAINS}.com/p/{i}"  # 10,000 registrable domains


# --- the child: one run of one case, in whichever build its interpreter has --------------


def open_queue(url: str, case: str) -> Any:
    from scraperv4.queue import JobQueue

    queue = JobQueue(url, name=f"bench-{uuid.uuid4().hex[:6]}")
    if case == "paced":
        queue.set_policy(domain_concurrency=1)  # this build only: every key tracked
    return queue


def cpu_seconds(url: str) -> float:
    """CPU seconds used so far by this process and, on Redis, by the redis-server (``INFO
    cpu``): unlike the wall clock, hardly changed by other programs competing for the CPUs."""
    own = os.times()
    used = own.user + own.system
    if url.startswith("redis://"):
        fields = dict(line.split(":", 1) for line in info(url, "cpu").splitlines() if ":" in line)
        used += float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])
    return used


def lifecycle(url: str, case: str, jobs: int) -> dict[str, float]:
    """The batched lifecycle: jobs/s of the whole and of the claim + complete part, and the
    CPU microseconds per job (this process and redis-server) of each."""
    from scraperv4.queue import JobSpec

    queue = open_queue(url, case)
    specs = [JobSpec(url_of(case, i), template_id="noop") for i in range(jobs)]
    cpu_started = cpu_seconds(url)
    started = time.perf_counter()
    for offset in range(0, jobs, BATCH):
        queue.submit_many(specs[offset : offset + BATCH])
    submitted = time.perf_counter()
    cpu_submitted = cpu_seconds(url)
    done = 0
    while True:
        claimed = queue.claim("bench-worker", BATCH)
        if not claimed:
            break
        done += sum(ack.accepted for ack in queue.complete_many(claimed))
    ended = time.perf_counter()
    cpu_ended = cpu_seconds(url)
    assert done == jobs, f"completed {done} of {jobs}"
    assert queue.stats().by_status["completed"] == jobs
    return {
        "lifecycle": jobs / (ended - started),
        "drain": jobs / (ended - submitted),
        "lifecycle_cpu_us": (cpu_ended - cpu_started) / jobs * 1e6,
        "drain_cpu_us": (cpu_ended - cpu_submitted) / jobs * 1e6,
    }


def info(url: str, section: str) -> str:
    """``INFO <section>`` over a plain socket (the earlier build's venv has no Redis client of
    its own)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"INFO {section}\r\n".encode())
        data = b""
        while not data.startswith(b"$") or b"\r\n" not in data:
            data += sock.recv(65536)
        header, rest = data.split(b"\r\n", 1)
        size = int(header[1:])
        while len(rest) < size:
            rest += sock.recv(65536)
    return rest[:size].decode()


def commandstats(url: str) -> dict[str, int]:
    """``INFO commandstats`` as {command: calls}."""
    calls = {}
    for line in info(url, "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_") :].split(":", 1)
            calls[name] = int(fields.split("calls=", 1)[1].split(",", 1)[0])
    return calls


def delta(before: dict[str, int], after: dict[str, int], into: dict[str, int]) -> None:
    for name, calls in after.items():
        if name != "info":
            into[name] = into.get(name, 0) + calls - before.get(name, 0)


def round_trips(url: str, case: str) -> dict[str, Any]:
    """Commands per claim (and per complete_many) of 100, counted by Redis."""
    from scraperv4.queue import JobSpec

    queue = open_queue(url, case)
    specs = [JobSpec(url_of(case, i), template_id="noop") for i in range(COUNT_JOBS)]
    for offset in range(0, COUNT_JOBS, BATCH):
        queue.submit_many(specs[offset : offset + BATCH])
    claims = 0
    claim_calls: dict[str, int] = {}
    complete_calls: dict[str, int] = {}
    while True:
        first = commandstats(url)
        claimed = queue.claim("bench-worker", BATCH)
        second = commandstats(url)
        if not claimed:
            break
        queue.complete_many(claimed)
        third = commandstats(url)
        claims += 1
        delta(first, second, claim_calls)
        delta(second, third, complete_calls)
    scripts = ("evalsha", "eval", "fcall", "evalsha_ro", "eval_ro", "fcall_ro")

    def per(calls: dict[str, int], names: Any) -> float:
        return sum(v for k, v in calls.items() if k in names) / claims

    return {
        "claims": claims,
        "claim_round_trips": per(claim_calls, scripts),
        "claim_commands": per(claim_calls, set(claim_calls) - set(scripts)),
        "complete_round_trips": per(complete_calls, scripts),
        "complete_commands": per(complete_calls, set(complete_calls) - set(scripts)),
        "claim_top": sorted(
            ((k, v / claims) for k, v in claim_calls.items() if v), key=lambda kv: -kv[1]
        )[:6],
    }


def child(args: argparse.Namespace) -> int:
    if args.count:
        result = round_trips(args.url, args.case)
    else:
        result = lifecycle(args.url, args.case, args.jobs)
    print(json.dumps(result))
    return 0


# --- the parent: builds, servers, interleaving, the report -------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def baseline_commit() -> str:
    """The parent of the first "Politeness (#13) core" commit."""
    found = git("log", "--format=%H", "--grep=^Politeness (#13) core").splitlines()
    if not found:
        raise SystemExit("no 'Politeness (#13) core' commit in this repository's history")
    return git("rev-parse", f"{found[-1]}^")


def baseline_python(explicit: Optional[str]) -> str:
    """An interpreter with the earlier build installed (built here once if needed)."""
    if explicit:
        return explicit
    commit = baseline_commit()
    home = ROOT / "target" / "bench-baseline" / commit[:12]
    python = home / "venv" / "bin" / "python"
    marker = home / "venv" / ".installed"
    if marker.exists():
        return str(python)
    print(f"building the earlier build ({commit[:12]}) into {home}: 10+ minutes", flush=True)
    source = home / "src"
    source.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip", "maturin>=1.9.4,<2"], check=True)
    env = {**os.environ, "PYO3_PYTHON": str(python), "CARGO_TARGET_DIR": str(home / "target")}
    subprocess.run(
        ["nice", str(python.with_name("maturin")), "build", "--release", "--interpreter",
         str(python), "--out", str(home / "wheels")],
        cwd=source, env=env, check=True,
    )  # fmt: skip
    wheels = sorted((home / "wheels").glob("scraperv4-*.whl"))
    subprocess.run([*pip, str(wheels[-1])], check=True)
    marker.touch()
    return str(python)


def run_child(python: str, url: str, case: str, jobs: int, count: bool = False) -> dict[str, Any]:
    argv = [python, str(Path(__file__).resolve()), "--child", "--url", url, "--case", case,
            "--jobs", str(jobs)]  # fmt: skip
    if count:
        argv.append("--count")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} {case} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def flush(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()


#: (backend, case, jobs per run, builds) in the order each round runs them.
PLAN = [
    ("redis", "10k-domains", REDIS_JOBS, ("old", "new")),
    ("redis", "1-domain", REDIS_JOBS, ("old", "new")),
    ("redis", "paced", REDIS_JOBS, ("new",)),
    ("sqlite", "10k-domains", SQLITE_JOBS, ("old", "new")),
    ("sqlite", "1-domain", SQLITE_JOBS, ("old", "new")),
]
LABELS = {"lifecycle": "submit+claim+complete", "drain": "claim+complete"}
CPU_LABELS = {
    "lifecycle_cpu_us": "submit+claim+complete CPU us/job",
    "drain_cpu_us": "claim+complete CPU us/job",
}
Timings = dict[tuple[str, str, str], list[dict[str, float]]]


def measure(builds: dict[str, str], rounds: int) -> tuple[Timings, dict[tuple[str, str], Any]]:
    """Every run of the plan, interleaved; then the round-trip counts."""
    from support.redis_server import RedisServer

    timings: Timings = {}
    counts: dict[tuple[str, str], Any] = {}
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        for round_number in range(rounds):
            for backend, case, jobs, versions in PLAN:
                # A B in even rounds, B A in odd ones: neither build always goes first.
                order = versions if round_number % 2 == 0 else versions[::-1]
                for version in order:
                    if backend == "redis":
                        flush(server.url)  # every run starts from an empty Redis
                        url = server.url
                    else:
                        url = f"sqlite://{tmp}/{uuid.uuid4().hex[:8]}.db"
                    result = run_child(builds[version], url, case, jobs)
                    timings.setdefault((backend, case, version), []).append(result)
                    print(
                        f"round {round_number + 1}: {backend} {case} {version}: "
                        f"{result['lifecycle']:,.0f} jobs/s "
                        f"(claim+complete {result['drain']:,.0f}); CPU us/job "
                        f"{result['lifecycle_cpu_us']:.0f} ({result['drain_cpu_us']:.0f})",
                        flush=True,
                    )
        for _backend, case, _jobs, versions in PLAN[:3]:
            for version in versions:
                flush(server.url)
                counts[(case, version)] = run_child(
                    builds[version], server.url, case, COUNT_JOBS, count=True
                )
    return timings, counts


def summarize(
    timings: Timings, counts: dict[tuple[str, str], Any], rounds: int
) -> tuple[dict[str, Any], dict[str, tuple[float, float]]]:
    """The figures and the goals (new / old: the median of the rounds' ratios) for ``report``."""

    def median(key: tuple[str, str, str], figure: str) -> float:
        values = sorted(r[figure] for r in timings[key])
        return values[len(values) // 2]

    figures: dict[str, Any] = {}
    goals: dict[str, tuple[float, float]] = {}
    for backend, case, _jobs, versions in PLAN:
        for version in versions:
            for figure, label in LABELS.items():
                values = [r[figure] for r in timings[(backend, case, version)]]
                figures[f"{backend} {case} {version} {label} (jobs/s)"] = spread(values)
            for figure, label in CPU_LABELS.items():
                values = [r[figure] for r in timings[(backend, case, version)]]
                figures[f"{backend} {case} {version} {label}"] = spread(values)
        if versions != ("old", "new"):
            continue
        for figure, label in LABELS.items():
            # Each round's own ratio (its two runs back to back, so under the same machine
            # speed); the goal is checked on their median, the spread is min-max.
            ratios = [
                new[figure] / old[figure]
                for new, old in zip(
                    timings[(backend, case, "new")], timings[(backend, case, "old")]
                )
            ]
            ratio = sorted(ratios)[len(ratios) // 2]
            figures[f"{backend} {case} {label} new/old per round"] = spread(ratios)
            if backend == "redis":
                goals[f"{backend} {case} {label} new/old"] = (ratio, GOAL)
        for figure, label in CPU_LABELS.items():
            # The same comparison in CPU time per job (client + redis-server): old / new, so
            # that, like the throughput ratio, above 1 means the new build is cheaper.
            ratios = [
                old[figure] / new[figure]
                for new, old in zip(
                    timings[(backend, case, "new")], timings[(backend, case, "old")]
                )
            ]
            figures[f"{backend} {case} {label} old/new per round"] = spread(ratios)
    for figure, label in LABELS.items():
        paced = median(("redis", "paced", "new"), figure)
        base = median(("redis", "10k-domains", "old"), figure)
        figures[f"redis paced (1 in flight per key) / old 10k {label}"] = paced / base
    for (case, version), c in counts.items():
        figures[f"redis {case} {version}: per claim of {BATCH}"] = (
            f"{c['claim_round_trips']:.2f} round trips, {c['claim_commands']:.1f} commands; "
            f"per complete_many: {c['complete_round_trips']:.2f} / {c['complete_commands']:.1f}"
        )
        figures[f"redis {case} {version}: claim's top commands"] = ", ".join(
            f"{k} {v:.1f}" for k, v in c["claim_top"]
        )
    figures["jobs per run (redis / sqlite), rounds"] = f"{REDIS_JOBS} / {SQLITE_JOBS}, {rounds}"
    return figures, goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=REDIS_JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--baseline-python",
        default=os.environ.get("SCRAPERV4_BASELINE_PYTHON"),
        help="an interpreter with the build before the politeness core installed",
    )
    args = parser.parse_args()
    if args.child:
        return child(args)
    builds = {"old": baseline_python(args.baseline_python), "new": sys.executable}
    print(f"earlier build: {builds['old']}\nthis build:    {builds['new']}", flush=True)
    timings, counts = measure(builds, args.rounds)
    figures, goals = summarize(timings, counts, args.rounds)
    # report() prints each goal's ratio as "x": here a share of the earlier build's figure
    # (0.8x = 80 %); the exact ratios are among the figures.
    met = report("politeness", figures, goals)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
