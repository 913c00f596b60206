"""The settings as people read them: ``docs/configuration.md`` (generated from the model)
and ``scraperv4 config show`` (effective values, their sources, secrets masked)."""

from __future__ import annotations

import re
from typing import Any

from scraperv4.settings._load import (
    CONFIG_ENV,
    ROLE_ENV,
    SettingSpec,
    _all_specs,
    _render,
    in_order,
    specs,
)
from scraperv4.settings.model import ROLES, SECTIONS, Settings

__all__ = ["masked", "reference", "show_rows"]


def masked(spec: SettingSpec, value: Any) -> str:
    """``value`` for display: a secret URL keeps everything but its password, any other
    secret is ``***``."""
    if not spec.secret or value is None:
        return _render(value)
    text = str(value)
    if "://" in text:
        # Everything between :// and the last @: a password may hold / ? # or @.
        return re.sub(r"(://)(.*)@", lambda m: m.group(1) + _hide(m.group(2)) + "@", text, count=1)
    return "***"


def _hide(userinfo: str) -> str:
    user, sep, _ = userinfo.partition(":")
    # A plain user name is kept (app:***); one that looks like part of a password is not.
    plain = user and not any(c in user for c in "/?#@%")
    return f"{user}:***" if sep and plain else "***"


def show_rows(settings: Settings) -> list[dict[str, str]]:
    """One row per setting: ``setting``, ``section``, ``value`` (masked), ``source``."""
    return [
        {
            "setting": spec.name,
            "section": spec.section,
            "value": masked(spec, getattr(settings, spec.name)),
            "source": str(settings.source(spec.name)),
        }
        for spec in in_order(type(settings))
    ]


def _flags(spec: SettingSpec) -> str:
    if not spec.flags:
        return ""
    shown = list(spec.flags)
    if spec.kind == "bool":
        shown += ["--no-" + spec.flags[0][2:], *spec.negative_flags]
    return ", ".join(f"`{flag}`" for flag in shown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[SettingSpec]) -> list[str]:
    lines = [
        "| setting | default | variable | flag | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in rows:
        variables = ", ".join(f"`{v}`" for v in spec.env_names)
        if spec.secret:
            variables += ", " + ", ".join(f"`{v}_FILE`" for v in spec.env_names)
        meaning = f"{spec.description} Accepted: {spec.accepted}."
        if spec.secret:
            meaning += " Secret: masked by `config show`."
        lines.append(
            f"| `{spec.name}` | `{_cell(spec.default_text)}` | {variables} | {_flags(spec)} "
            f"| {_cell(meaning)} |"
        )
    return lines


def reference() -> str:
    """``docs/configuration.md``: every setting with its default, variable, flag and
    meaning, section by section, and which role reads it."""
    everything = _all_specs()
    users = {
        name: [role for role, model in ROLES.items() if name in model.model_fields]
        for name in everything
    }
    out = [
        "# Configuration",
        "",
        "<!-- Generated from the settings model (python/scraperv4/settings/model.py) by",
        "     `scraperv4 config docs > docs/configuration.md`; a test checks it is up to date. -->",
        "",
        "Every setting of every role has one name, used everywhere: the key in a config file,",
        "`SCRAPERV4_<NAME>` in the environment, `--<name-with-dashes>` on the command line and",
        "the keyword argument in Python. Values are read in layers; a later layer wins:",
        "",
        "1. built-in defaults (the tables below);",
        f"2. a config file, TOML or YAML: `--config FILE`, or `${CONFIG_ENV}`;",
        "3. environment variables: `SCRAPERV4_<NAME>` (a few older names still work, e.g.",
        "   `REDIS_URL`, `WORKER_ID`; the new name wins when both are set); secrets can be",
        "   read from a file instead, named by `<VARIABLE>_FILE` (Docker and Kubernetes",
        "   secrets), its content stripped of surrounding whitespace; an empty variable counts",
        "   as not set;",
        "4. command-line flags;",
        "5. keyword arguments in Python (`Worker(queue, concurrency=8)`,",
        "   `ScrapingWorker(worker_id, redis_url)`, ...).",
        "",
        "Each value is checked once, when the settings are loaded; an error names the setting,",
        "where the bad value came from and what is accepted, e.g.",
        "`concurrency = 'lots' from environment variable SCRAPERV4_CONCURRENCY: input should",
        "be a valid integer ... (accepted: an integer from 1 to 10000)` (exit code 2 on the",
        "command line). A `SCRAPERV4_*` variable that is no setting is reported with a warning",
        "(with the closest name), never silently ignored.",
        "",
        "`scraperv4 config show [--role ROLE] [flags...]` prints the effective settings of a",
        "role and where each came from (`default`, `file`, `env`, `flag`), secrets masked;",
        "`scraperv4 config check FILE` validates a config file for every role.",
        "",
        f"`${ROLE_ENV}` (`worker`, `coordinator` or `autoscaler`) makes a bare `scraperv4`",
        "run that role, as the guide's containers do.",
        "",
        "## Roles",
        "",
        "| role | command | Python |",
        "| --- | --- | --- |",
        "| `worker` | `scraperv4 worker` | `scraperv4.worker.Worker`, "
        "`scraperv4.scaling.worker.ScrapingWorker` |",
        "| `coordinator` | `scraperv4 coordinator` | `scraperv4.coordinator.Coordinator` |",
        "| `autoscaler` | `scraperv4 autoscale` | `scraperv4.autoscale.Autoscaler`, "
        "`scraperv4.scaling.auto_scaler.AutoScaler` |",
        "| `run` | `scraperv4 run` | `scraperv4.crawl.run_crawl` |",
        "| `client` | `scraperv4 submit`, `stats`, `jobs`, `results` | |",
        "",
        "## Config file",
        "",
        "Shared sections are tables named after the section (`[queue]`, `[fetch]`, ...); a",
        "role's table (`[worker]`, `[run]`, ...) may hold any of that role's settings and wins",
        "over the shared tables, so one file can serve every role. A setting may also stand at",
        "the top of the file, for every role that has it. Unknown names are errors.",
        "",
        "```toml",
        "[queue]",
        'queue_url = "redis://redis:6379/0"',
        "",
        "[fetch]",
        "allow_private_networks = true",
        "",
        "[politeness]",
        "delay = [1, 3]",
        "",
        "[worker]",
        'templates = "/templates"',
        "concurrency = 64",
        'heartbeat = "10s"',
        "```",
        "",
        "Durations are seconds; `500ms`, `30s`, `5m` and `2h` are accepted too. Lists are",
        "comma-separated or JSON arrays in variables and flags, arrays in files.",
        "",
        "## Why pydantic",
        "",
        "The model is a set of [pydantic](https://docs.pydantic.dev) (v2) classes: typed fields",
        'with constraints, lax parsing of text (`"64"`, `"true"`), precise error messages,',
        "and field metadata from which the CLI flags, this page and `config show` are",
        "generated. Its validation core is Rust (pydantic-core), well kept and ubiquitous.",
        "The layering itself is ~200 lines of our own (`settings/_load.py`) rather than",
        "pydantic-settings: its sources assume nested variable names (`SCRAPERV4_FETCH__X`),",
        "top-level file keys and a secrets directory, while we want one flat name per setting,",
        "older aliases, `_FILE` variables, warnings for unknown variables, and, above all, the",
        "source of every value, which `config show` and the error messages need and",
        "pydantic-settings does not record. Rules between settings that the Rust core owns",
        "(the autoscaler's) are checked by the Rust code itself at load time.",
        "",
    ]
    titles = {
        "queue": "Queue (worker, coordinator, autoscaler, client)",
        "fetch": "Fetch (worker, run)",
        "politeness": "Politeness (worker, run)",
        "adaptive": "Adaptive concurrency (worker, run)",
        "metrics": "Metrics (worker, autoscaler)",
        "logging": "Logging (every role)",
    }
    for section, title in titles.items():
        out += [f"## {title}", "", f"Table `[{section}]`.", ""]
        out += _table(list(specs(SECTIONS[section]).values()))
        out.append("")
    for role, model in ROLES.items():
        own = [s for s in specs(model).values() if s.section == role]
        if not own:
            continue
        out += [f"## {role.capitalize()}", "", f"Table `[{role}]`.", ""]
        out += _table(own)
        out.append("")
    overridden = [
        f"`{name}` ({', '.join(f'{r}: `{specs(ROLES[r])[name].default_text}`' for r in roles)})"
        for name, roles in users.items()
        if len({specs(ROLES[r])[name].default_text for r in roles}) > 1
    ]
    if overridden:
        out += ["Defaults that differ by role: " + "; ".join(overridden) + ".", ""]
    return "\n".join(out)
