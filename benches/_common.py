"""Shared helpers of the benchmark scripts: timing, reporting, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent.parent / "bench-results"


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeats`` runs, in seconds (the least disturbed by the machine)."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Runs every variant once per round, in turn (A B C A B C ...), and returns each one's
    timings in seconds: on a machine whose speed drifts, each round compares like with like."""
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    return timings


def spread(values: list[float]) -> str:
    """``median (min-max)`` of ``values``."""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return f"{median:,.2f} ({ordered[0]:,.2f}-{ordered[-1]:,.2f})"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name: str, figures: dict[str, Any], goals: dict[str, tuple[float, float]]) -> bool:
    """Print figures and goals (``label: (ratio, required)``) and save them; True if all met."""
    print(f"\n== {name} ==")
    for key, value in figures.items():
        print(f"  {key:<44} {value:,.3f}" if isinstance(value, float) else f"  {key:<44} {value}")
    met = True
    for label, (ratio, required) in goals.items():
        ok = ratio >= required
        met &= ok
        print(
            f"  GOAL {label:<39} {ratio:8.1f}x (need >= {required:g}x) {'MET' if ok else 'NOT MET'}"
        )
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "figures": figures,
        "goals": {k: {"ratio": r, "required": q, "met": r >= q} for k, (r, q) in goals.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))
    return met
