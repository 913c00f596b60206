"""``scraperv4 config``: show the effective settings, check a config file, print the
settings reference."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from scraperv4.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    add_setting_flags,
    guide,
    load_settings,
)
from scraperv4.exceptions import SettingsError
from scraperv4.settings import ROLE_ENV, ROLES, load, read_config_file


def add(commands: Any) -> None:
    command = commands.add_parser(
        "config",
        help="show the effective settings, check a config file",
        **guide(
            "Settings come from, later winning: built-in defaults < a config file (--config\n"
            "FILE or SCRAPERV4_CONFIG) < SCRAPERV4_<NAME> variables < flags < Python keyword\n"
            "arguments. docs/configuration.md lists them all.\n\n"
            "examples:\n"
            "  scraperv4 config show --role worker\n"
            "  scraperv4 config show --role worker --concurrency 8   (with a role's flags)\n"
            "  scraperv4 config check scraperv4.toml\n"
            "  scraperv4 config docs > docs/configuration.md"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="the effective settings of a role and where each came from",
        description="Print every setting of a role, its value (secrets masked) and its "
        "source: default, file, env or flag. Flags after the options are the role's own "
        "settings flags (scraperv4 <command> --help lists them).",
    )
    show.add_argument(
        "--role",
        choices=list(ROLES),
        default=None,
        help=f"the role (default: ${ROLE_ENV}, else worker)",
    )
    show.add_argument("--json", action="store_true", help="one JSON array of objects")
    show.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    show.set_defaults(handler=_show, accepts_role_flags=True)
    check = actions.add_parser(
        "check",
        help="validate a config file for every role (exit code 1 if it is not valid)",
    )
    check.add_argument("file", help="a .toml, .yaml or .yml file")
    check.set_defaults(handler=_check)
    docs = actions.add_parser("docs", help="print the settings reference (Markdown)")
    docs.set_defaults(handler=_docs)


def _role(args: argparse.Namespace) -> str:
    if args.role:
        return str(args.role)
    from_env = os.environ.get(ROLE_ENV, "").strip().lower()
    return from_env if from_env in ROLES else "worker"


def _show(args: argparse.Namespace) -> int:
    from scraperv4.settings._render import show_rows

    model = ROLES[_role(args)]
    role_flags = argparse.ArgumentParser(prog=f"scraperv4 config show --role {model.ROLE}")
    add_setting_flags(role_flags, model)
    flags = role_flags.parse_args(args.extra_arguments)
    if hasattr(args, "config"):
        flags.config = args.config
    rows = show_rows(load_settings(flags, model))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(r["setting"]) for r in rows)
    value_width = min(max(len(r["value"]) for r in rows), 48)
    print(f"# {model.ROLE} settings")
    for row in rows:
        print(f"{row['setting']:<{width}}  {row['value']:<{value_width}}  {row['source']}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    read_config_file(args.file)  # unreadable or unparsable: a usage error (exit 2)
    problems: list[str] = []
    for model in ROLES.values():
        try:
            load(model, config_file=args.file, environ={})
        except SettingsError as error:
            lines = [e.get("text", str(error)) for e in error.errors] or [str(error)]
            problems.extend(line for line in lines if line not in problems)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{args.file}: not valid", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.file}: ok")
    return EXIT_OK


def _docs(args: argparse.Namespace) -> int:
    from scraperv4.settings._render import reference

    sys.stdout.write(reference())
    return EXIT_OK
