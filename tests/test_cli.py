"""The `scraperv4` console script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import scraperv4

ROOT = Path(__file__).resolve().parent.parent


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match, "Cargo.toml has no package version"
    return match.group(1)


def test_version_comes_from_cargo() -> None:
    assert scraperv4.__version__ == cargo_version()
    script = Path(sys.executable).with_name("scraperv4")
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == f"scraperv4 {cargo_version()}"


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == f"scraperv4 {scraperv4.__version__}"


def test_a_bad_log_level_is_a_usage_error_with_exit_code_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "--log-level", "loud"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "loud" in done.stderr
