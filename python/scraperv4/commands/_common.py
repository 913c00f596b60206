"""What the commands share: exit codes, help formatting, URL lists, and the settings flags
generated from the settings model (one flag per setting, each parsed by the model)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Optional

from scraperv4.exceptions import ConfigError
from scraperv4.settings import Settings, load
from scraperv4.settings._load import SettingSpec, in_order

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Prefix of the argparse destinations that hold settings flags.
_DEST = "setting:"


def guide(text: str) -> dict[str, Any]:
    """``add_parser`` keywords for a description laid out as written."""
    return {"description": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def read_urls(urls: list[str], urls_file: Optional[str]) -> list[str]:
    """URLs from the arguments and a file (``-``: stdin), comments and blanks skipped."""
    collected = list(urls)
    if urls_file:
        source = sys.stdin if urls_file == "-" else open(urls_file, encoding="utf-8")  # noqa: SIM115
        with source:
            collected.extend(
                line.strip() for line in source if line.strip() and not line.startswith("#")
            )
    if not collected:
        raise ConfigError("no URLs: pass them as arguments or with --urls-file FILE")
    return collected


class _SettingFlag(argparse.Action):
    """Stores ``(value, flag as typed)``; the model parses the value (so a bad one is
    reported like one from any other layer, naming the flag)."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, spec: SettingSpec, value: Any = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.value = value
        nargs = 0 if spec.kind == "bool" else "+" if spec.kind == "range" else None
        super().__init__(option_strings, dest, nargs=nargs, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
        option_string: Optional[str] = None,
    ) -> None:  # fmt: skip
        kind = self.spec.kind
        if kind == "bool":
            value: Any = self.value
        elif kind in ("list", "args"):
            previous = getattr(namespace, self.dest, None)
            items = list(previous[0]) if previous else []
            if kind == "list":
                items.extend(v.strip() for v in str(values).split(",") if v.strip())
            else:
                items.append(values)
            value = items
        elif kind == "range":
            value = ",".join(values)
        else:
            value = values
        setattr(namespace, self.dest, (value, option_string or self.option_strings[0]))


def _help(spec: SettingSpec) -> str:
    text = f"{spec.description} [default {spec.default_text}; ${spec.env}]"
    return text.replace("%", "%%")


def add_setting_flags(
    parser: argparse.ArgumentParser,
    model: type[Settings],
    *,
    skip: Sequence[str] = (),
    only_sections: Optional[Sequence[str]] = None,
) -> None:
    """A flag per setting of ``model`` (grouped by section; ``only_sections``: of those
    sections only), plus ``--config FILE``; the command's handler receives
    ``args.settings``, loaded from every layer."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file, TOML or YAML [default $SCRAPERV4_CONFIG]",
    )
    groups: dict[str, Any] = {}
    for spec in in_order(model):
        if spec.name in skip or not spec.flags:
            continue
        if only_sections is not None and spec.section not in only_sections:
            continue
        title = "settings" if spec.section == model.ROLE else f"{spec.section} settings"
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        dest = _DEST + spec.name
        if spec.kind == "bool":
            group.add_argument(
                *spec.flags, action=_SettingFlag, dest=dest, spec=spec, value=True,
                help=_help(spec),
            )  # fmt: skip
            negatives = ["--no-" + spec.flags[0][2:], *spec.negative_flags]
            group.add_argument(
                *negatives, action=_SettingFlag, dest=dest, spec=spec, value=False,
                help=argparse.SUPPRESS,
            )  # fmt: skip
        else:
            metavar = "SECONDS" if spec.kind == "range" else spec.metavar or spec.name.upper()
            group.add_argument(
                *spec.flags, action=_SettingFlag, dest=dest, spec=spec, metavar=metavar,
                help=_help(spec),
            )  # fmt: skip
    parser.set_defaults(settings_model=model)


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, for a parser without settings flags (they are
    accepted before the command and after it)."""
    from scraperv4.settings.model import LoggingSection

    for spec in in_order(LoggingSection):
        parser.add_argument(
            *spec.flags,
            action=_SettingFlag,
            dest=_DEST + spec.name,
            spec=spec,
            metavar=spec.metavar or spec.name.upper(),
            help=_help(spec),
        )


def add_logging_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """Logging flags on every command that has none yet (``scraperv4 demo --log-level info``
    works like ``scraperv4 --log-level info demo``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                add_logging_flags_everywhere(command)
            return
    if "--log-level" not in parser._option_string_actions:
        add_logging_flags(parser)


def flags_given(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """``name -> (value, flag)`` of the settings flags on the command line."""
    return {key[len(_DEST) :]: value for key, value in vars(args).items() if key.startswith(_DEST)}


def load_settings(args: argparse.Namespace, model: type[Settings]) -> Any:
    """The settings of ``model`` from every layer, with this command line's flags."""
    return load(model, config_file=getattr(args, "config", None), flags=flags_given(args))
