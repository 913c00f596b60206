"""``scraperv4 domains``: the fleet-wide politeness of a queue — its keys, their overrides and
the queue-wide policy (``docs/politeness.md``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Optional

from scraperv4.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_setting_flags,
    guide,
)
from scraperv4.settings import ClientSettings

#: The queue-wide settings ``domains policy`` changes (``--<name>`` flags of the settings).
POLICY_SETTINGS = ("domain_delay", "domain_concurrency", "autothrottle", "max_domain_delay")

#: Keys read per call while listing every key.
_PAGE = 1000

#: Largest per-key delay accepted (the queue-wide one has the same bound).
_MAX_DELAY = 86400.0


def _key_first(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["key"],)


#: ``--sort`` choices: what each puts first (ties by key).
SORTS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {
    "waiting": ("most jobs waiting", lambda d: (-d["waiting"], -d["inflight"], d["key"])),
    "inflight": ("most in flight", lambda d: (-d["inflight"], -d["waiting"], d["key"])),
    "throttled": (
        "most recently throttled (429/503), then failed",
        lambda d: (
            -(d["last_throttled"] or 0.0), -(d["last_error"] or 0.0), -d["throttled"], d["key"]
        ),
    ),
    "errors": ("most 429/503 answers and failed requests", lambda d: (
        -(d["throttled"] + d["errors"]), d["key"])),
    "delay": ("longest delay", lambda d: (-d["delay"], -d["waiting"], d["key"])),
    "ready": ("ready soonest", lambda d: (d["ready_at"] or 0.0, -d["waiting"], d["key"])),
    "key": ("by key", _key_first),
    "recent": ("most recently changed (the queue's order)", lambda d: ()),
}  # fmt: skip


def add(commands: Any) -> None:
    command = commands.add_parser(
        "domains",
        help="fleet-wide politeness: keys, per-key overrides, the queue's policy",
        **guide(
            "The queue paces jobs per politeness key (a site's registrable domain by default)\n"
            "for the whole fleet: a key's delay between two requests, its requests in flight\n"
            "at once, Retry-After pauses and robots.txt Crawl-delay, and a delay that doubles\n"
            "on 429/503 answers and failed requests. See docs/politeness.md.\n\n"
            "examples:\n"
            "  scraperv4 domains list                        (busiest keys first)\n"
            "  scraperv4 domains list --sort throttled --limit 20\n"
            "  scraperv4 domains show example.com\n"
            "  scraperv4 domains set example.com --delay 2 --concurrency 1\n"
            "  scraperv4 domains set example.com --no-delay --no-concurrency\n"
            "  scraperv4 domains policy                      (the queue-wide settings)\n"
            "  scraperv4 domains policy --domain-delay 0.5 --domain-concurrency 4"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="the keys the queue keeps a record of, as a table",
        **guide(
            "The keys the queue keeps a record of: paced, limited, throttled or with an\n"
            "override (keys that need no pacing are not tracked: their jobs flow freely).\n\n"
            "columns: WAITING jobs in the key's own queue, IN FLIGHT, DELAY between two\n"
            "requests now, LIMIT requests in flight at once (- none), READY IN until the\n"
            "next request may start (at limit: when a job in flight finishes), 429/ERR\n"
            "answers 429/503 and failed requests reported,\n"
            "LAST THROTTLED, FLAGS (p paced: the key has its own queue; d, c: a delay or\n"
            "concurrency override; r: robots.txt Crawl-delay in force; x: paused by a\n"
            "Retry-After)."
        ),
    )
    listing.add_argument(
        "--sort",
        choices=list(SORTS),
        default="waiting",
        help="order: " + "; ".join(f"{k}: {v[0]}" for k, v in SORTS.items()) + " (default waiting)",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="show at most this many keys (default 50)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per key and line")
    add_setting_flags(listing, ClientSettings)
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one key in full")
    show.add_argument("key", metavar="KEY", help="a politeness key, or a URL (its key is shown)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    add_setting_flags(show, ClientSettings)
    show.set_defaults(handler=_show)

    setting = actions.add_parser(
        "set",
        help="set or clear a key's own delay and concurrency",
        **guide(
            "Give one key its own delay (seconds between two requests, fleet-wide) or\n"
            "concurrency (requests in flight at once, fleet-wide; 0: no limit), in place of\n"
            "the queue's. --no-delay / --no-concurrency remove the override.\n\n"
            "example:\n  scraperv4 domains set example.com --delay 2 --concurrency 1"
        ),
    )
    setting.add_argument("key", metavar="KEY", help="a politeness key, or a URL (its key is set)")
    delay = setting.add_mutually_exclusive_group()
    delay.add_argument("--delay", type=float, metavar="SECONDS", help="seconds between requests")
    delay.add_argument(
        "--no-delay", action="store_true", help="remove the delay override (the queue's applies)"
    )
    limit = setting.add_mutually_exclusive_group()
    limit.add_argument(
        "--concurrency", type=int, metavar="N", help="requests in flight at once (0: no limit)"
    )
    limit.add_argument(
        "--no-concurrency",
        action="store_true",
        help="remove the concurrency override (the queue's applies)",
    )
    setting.add_argument("--json", action="store_true", help="print the key after as JSON")
    add_setting_flags(setting, ClientSettings)
    setting.set_defaults(handler=_set)

    policy = actions.add_parser(
        "policy",
        help="show or change the queue-wide politeness settings",
        **guide(
            "Show the politeness settings every worker of the queue follows, or change those\n"
            "given (--domain-delay, --domain-concurrency, --autothrottle, --max-domain-delay;\n"
            "the same settings may come from SCRAPERV4_* variables or a config file). They are\n"
            "stored in the queue: every worker follows the change at its next claim.\n\n"
            "examples:\n"
            "  scraperv4 domains policy\n"
            "  scraperv4 domains policy --domain-delay 1 --domain-concurrency 2"
        ),
    )
    policy.add_argument("--json", action="store_true", help="print one JSON object")
    add_setting_flags(policy, ClientSettings)
    policy.set_defaults(handler=_policy)


# --- formatting ---------------------------------------------------------------------------


def seconds_text(value: float) -> str:
    """``0.25s``, ``2s``, ``1m30s``, ``2h05m``."""
    if value < 60:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{text}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _delay(value: float) -> str:
    return seconds_text(value) if value > 0 else "-"


def _limit(value: Optional[int]) -> str:
    return "-" if not value else str(value)


def _ready_in(d: dict[str, Any]) -> str:
    """``now``, the time left, or ``at limit`` (its in-flight limit reached: ready when one
    of its jobs finishes)."""
    if d["concurrency"] and d["inflight"] >= d["concurrency"]:
        return "at limit"
    at = d["ready_at"]
    return "now" if at is None or at <= d["now"] else seconds_text(at - d["now"])


def _ago(at: Optional[float], now: float) -> str:
    return "-" if not at else f"{seconds_text(max(0.0, now - at))} ago"


def flags(d: dict[str, Any]) -> str:
    """``p`` paced, ``d``/``c`` overrides, ``r`` robots.txt Crawl-delay, ``x`` paused."""
    paused = d["paused_until"] is not None and d["paused_until"] > d["now"]
    marks = (
        ("p", d["paced"]),
        ("d", d["delay_override"] is not None),
        ("c", d["concurrency_override"] is not None),
        ("r", d["crawl_delay"] > 0),
        ("x", paused),
    )
    return "".join(mark for mark, on in marks if on) or "-"


_COLUMNS = (
    ("KEY", "<"),
    ("WAITING", ">"),
    ("IN FLIGHT", ">"),
    ("DELAY", ">"),
    ("LIMIT", ">"),
    ("READY IN", ">"),
    ("429/ERR", ">"),
    ("LAST THROTTLED", ">"),
    ("FLAGS", "<"),
)


def _row(d: dict[str, Any]) -> tuple[str, ...]:
    return (
        d["key"],
        str(d["waiting"]),
        str(d["inflight"]),
        _delay(d["delay"]),
        _limit(d["concurrency"]),
        _ready_in(d),
        f"{d['throttled']}/{d['errors']}",
        _ago(d["last_throttled"], d["now"]),
        flags(d),
    )


def table(domains: list[dict[str, Any]]) -> str:
    """The keys as an aligned text table (a header line, one line per key)."""
    rows = [tuple(name for name, _ in _COLUMNS), *(_row(d) for d in domains)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [f"{cell:{align}{width}}" for cell, (_, align), width in zip(row, _COLUMNS, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _describe(d: dict[str, Any]) -> str:
    """One key in full, as ``name: value`` lines."""
    now = d["now"]

    def override(value: Any, text: str) -> str:
        return "queue's" if value is None else text

    paused = d["paused_until"]
    lines = [
        ("key", d["key"]),
        ("waiting", f"{d['waiting']} jobs in its own queue" if d["paced"] else
            "- (not paced: its jobs wait in the shared queue)"),
        ("in flight", str(d["inflight"])),
        ("delay", f"{_delay(d['delay'])} between two requests"),
        ("concurrency", "no limit" if not d["concurrency"] else f"{d['concurrency']} at once"),
        ("ready in", _ready_in(d)),
        ("delay override", override(d["delay_override"], _delay(d["delay_override"] or 0))),
        ("concurrency override", override(
            d["concurrency_override"],
            "no limit" if d["concurrency_override"] == 0 else str(d["concurrency_override"]),
        )),
        ("robots Crawl-delay", _delay(d["crawl_delay"])),
        ("paused until", f"in {seconds_text(paused - now)} (Retry-After)"
            if paused is not None and paused > now else "-"),
        ("429/503 answers", f"{d['throttled']} (last {_ago(d['last_throttled'], now)})"),
        ("failed requests", f"{d['errors']} (last {_ago(d['last_error'], now)})"),
        ("paced", "yes (its own queue)" if d["paced"] else "no"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in lines)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=False)


# --- handlers ------------------------------------------------------------------------------


def _resolve_key(queue: Any, text: str) -> str:
    """``text``, or the politeness key of a URL."""
    if "://" in text:
        key = str(queue.politeness_key(text))
        print(f"{text} -> key {key}", file=sys.stderr)
        return key
    return text


def all_domains(queue: Any) -> list[dict[str, Any]]:
    """Every key the queue keeps a record of (paged; a key seen twice while keys change
    counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = queue.domains(offset, _PAGE)
        for d in page:
            seen.setdefault(d["key"], d)
        if len(page) < _PAGE:
            return list(seen.values())
        offset += _PAGE


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("scraperv4: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    queue = args.settings.open_queue()
    if args.sort == "recent":
        domains = list(queue.domains(0, args.limit))
        total: Optional[int] = None
    else:
        domains = all_domains(queue)
        total = len(domains)
        domains.sort(key=SORTS[args.sort][1])
    shown = domains[: args.limit]
    if args.json:
        for d in shown:
            print(_json(d))
        return EXIT_OK
    stats = queue.stats()
    if shown:
        print(table(shown))
    of = "" if total is None else f" of {total}"
    print(
        f"({len(shown)}{of} keys shown, {SORTS[args.sort][0]}; {stats.paced_keys} paced, "
        f"{stats.waiting_keys} waiting for their next slot; runnable backlog {stats.runnable})",
        file=sys.stderr,
    )
    if not shown:
        print(
            "no key needs pacing: every job flows freely (set a delay with "
            "'scraperv4 domains policy --domain-delay S' or 'scraperv4 domains set KEY --delay S')",
            file=sys.stderr,
        )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    queue = args.settings.open_queue()
    key = _resolve_key(queue, args.key)
    d = queue.domain(key)
    if d is None:
        print(
            f"scraperv4: the queue keeps no record of {key!r}: it has no override, no delay and "
            "no limit, nothing in flight and was never throttled (its jobs flow freely)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(_json(d) if args.json else _describe(d))
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.delay is not None:
        if not (math.isfinite(args.delay) and 0 <= args.delay <= _MAX_DELAY):
            print(
                f"scraperv4: --delay must be 0 to {_MAX_DELAY:.0f} seconds (got {args.delay})",
                file=sys.stderr,
            )
            return EXIT_USAGE
        changes["delay"] = args.delay
    elif args.no_delay:
        changes["delay"] = None
    if args.concurrency is not None:
        if args.concurrency < 0:
            print(
                f"scraperv4: --concurrency must be 0 (no limit) or more (got {args.concurrency})",
                file=sys.stderr,
            )
            return EXIT_USAGE
        changes["concurrency"] = args.concurrency
    elif args.no_concurrency:
        changes["concurrency"] = None
    if not changes:
        print(
            "scraperv4: nothing to set: give --delay SECONDS or --no-delay, "
            "--concurrency N or --no-concurrency",
            file=sys.stderr,
        )
        return EXIT_USAGE
    queue = args.settings.open_queue()
    key = _resolve_key(queue, args.key)
    d = queue.set_domain(key, **changes)
    if args.json:
        print(_json(d))
        return EXIT_OK
    said = []
    if "delay" in changes:
        said.append(
            "delay: the queue's" if changes["delay"] is None
            else f"delay {seconds_text(changes['delay'])}"
        )  # fmt: skip
    if "concurrency" in changes:
        value = changes["concurrency"]
        said.append(
            "concurrency: the queue's" if value is None
            else "concurrency: no limit" if value == 0 else f"concurrency {value}"
        )  # fmt: skip
    print(f"{key}: {', '.join(said)}")
    print(_describe(d))
    return EXIT_OK


def _policy_text(policy: dict[str, Any]) -> list[tuple[str, str]]:
    auto = policy["autothrottle"]
    return [
        ("domain_delay", f"{_delay(policy['domain_delay'])} between two requests to one key"),
        (
            "domain_concurrency",
            "no limit" if not policy["domain_concurrency"]
            else f"{policy['domain_concurrency']} requests to one key at once",
        ),
        ("autothrottle", "off" if not auto else f"target concurrency {auto:g} per key"),
        ("max_domain_delay", f"{_delay(policy['max_domain_delay'])} (cap of the adaptive delay)"),
        (
            "max_domain_pause",
            f"{_delay(policy['max_domain_pause'])} (longest Retry-After honoured)",
        ),
    ]  # fmt: skip


def _policy(args: argparse.Namespace) -> int:
    from scraperv4.queue import JobQueue

    settings = args.settings
    # Opened without the policy settings, so the change below is made (and told) once.
    options = {k: v for k, v in settings.queue_options().items() if k not in POLICY_SETTINGS}
    queue = JobQueue(settings.require_queue_url(), **options)
    before = queue.policy()
    given = {name: getattr(settings, name) for name in POLICY_SETTINGS}
    given = {name: value for name, value in given.items() if value is not None}
    after = queue.set_policy(**given) if given else before
    if args.json:
        print(_json(after))
        return EXIT_OK
    for name in given:
        old, new = before[name], after[name]
        origin = settings.source(name).describe()
        if old == new:
            print(f"{name} unchanged ({new:g}, from {origin})")
        else:
            print(f"{name} {old:g} -> {new:g} (from {origin})")
    print(f"politeness policy of {queue.url}:")
    width = max(len(name) for name in after)
    for name, text in _policy_text(after):
        print(f"  {name:<{width}}  {text}")
    return EXIT_OK
