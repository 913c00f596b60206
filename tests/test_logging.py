"""Rust `tracing` events reach Python `logging`, at the level Python or the env var sets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import scraperv4

RUNTIME_EVENT = "started the tokio runtime"


def _run(script: str, env_level: str | None) -> str:
    env = dict(os.environ)
    env.pop(scraperv4.LOG_LEVEL_ENV, None)
    if env_level is not None:
        env[scraperv4.LOG_LEVEL_ENV] = env_level
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stderr


START_RUNTIME = """
    import logging
    logging.basicConfig(format="%(name)s|%(levelname)s|%(message)s")
    import scraperv4
    {set_level}
    scraperv4._core._block_for(0.0)
"""


def test_env_var_debug_shows_rust_debug_events_under_the_module_logger() -> None:
    stderr = _run(START_RUNTIME.format(set_level=""), env_level="debug")
    lines = [line for line in stderr.splitlines() if RUNTIME_EVENT in line]
    assert lines, stderr
    name, level, _ = lines[0].split("|", 2)
    assert name == "scraperv4.runtime"
    assert level == "DEBUG"


def test_default_level_hides_debug_events() -> None:
    stderr = _run(START_RUNTIME.format(set_level=""), env_level=None)
    assert RUNTIME_EVENT not in stderr


def test_level_set_from_python_wins_over_the_env_var() -> None:
    stderr = _run(
        START_RUNTIME.format(set_level="scraperv4.set_log_level('warning')"), env_level="debug"
    )
    assert RUNTIME_EVENT not in stderr
    stderr = _run(START_RUNTIME.format(set_level="scraperv4.set_log_level('DEBUG')"), None)
    assert RUNTIME_EVENT in stderr


def test_a_bad_env_level_is_reported_and_ignored_never_a_failed_import() -> None:
    stderr = _run(START_RUNTIME.format(set_level=""), env_level="chatty")
    assert "SCRAPERV4_LOG_LEVEL='chatty' is not a log level" in stderr
    assert "Traceback" not in stderr and RUNTIME_EVENT not in stderr


def test_log_flags_are_accepted_after_every_command() -> None:
    for command in (["demo", "--help"], ["resources", "--json"], ["stats", "--help"],
                    ["config", "show", "--role", "worker"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "scraperv4", *command, "--log-level", "info",
             "--log-format", "json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "unrecognized arguments" not in done.stderr, (command, done.stderr)
        assert done.returncode in (0, 1), (command, done.stderr)


FOSTER_PAGE = """
    import logging
    logging.basicConfig(format="%(name)s|%(levelname)s|%(message)s")
    from scraperv4.extract import Template
    template = Template.from_dict(
        {"id": "t", "item": "td", "fields": [{"name": "v", "selector": "*", "default": "-"}]})
    page = "<table><tr><td>a</td></tr>stray text<tr><td>b</table>"
    assert len(template.extract(page, "http://e/")) == 2
"""


def test_html5ever_diagnostics_are_debug_records_never_warnings_on_stderr() -> None:
    """html5ever warns "foster parenting not implemented" about ordinary (if sloppy) pages:
    a debug detail of the DOM engine, under the scraperv4.extract.html5ever logger."""
    assert "foster" not in _run(FOSTER_PAGE, env_level=None)
    lines = [line for line in _run(FOSTER_PAGE, "debug").splitlines() if "foster" in line]
    assert lines
    assert all(line.startswith("scraperv4.extract.html5ever|DEBUG|") for line in lines), lines
