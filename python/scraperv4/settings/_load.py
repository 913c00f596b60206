"""Loading settings: the layers, where each value came from, and errors that say both.

Layers, later wins: built-in defaults < the config file < the environment < command-line
flags < keyword arguments in Python. Each layer is a mapping ``name -> (value, Source)``;
only the winning value of each setting is validated, so an error names exactly the layer
that supplied the bad value.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import annotated_types
from pydantic import BeforeValidator, ValidationError

from scraperv4.exceptions import ConfigError, SettingsError
from scraperv4.settings._types import _argument_list, _duration
from scraperv4.settings.model import ROLES, SECTIONS, Settings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT",
    "ENV_PREFIX",
    "ROLE_ENV",
    "SettingSpec",
    "Source",
    "in_order",
    "known_variables",
    "load",
    "read_config_file",
    "resolve",
    "specs",
    "with_overrides",
]

log = logging.getLogger("scraperv4.settings")

#: Every setting's variable is this prefix plus its name in capitals.
ENV_PREFIX = "SCRAPERV4_"
#: The variable naming the config file (``--config`` wins over it).
CONFIG_ENV = "SCRAPERV4_CONFIG"
#: The variable choosing the role of a bare ``scraperv4`` command (containers).
ROLE_ENV = "SCRAPERV4_ROLE"

S = TypeVar("S", bound=Settings)
Layer = dict[str, tuple[Any, "Source"]]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a value came from: ``kind`` is ``default``, ``file``, ``env``, ``flag`` or
    ``argument`` (a keyword argument in Python); ``detail`` names the file and table, the
    variable or the flag."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}" if self.detail else self.kind

    def describe(self) -> str:
        """For error messages: ``environment variable SCRAPERV4_X``, ``flag --x``, ..."""
        words = {
            "default": "the built-in default",
            "file": "config file",
            "env": "environment variable",
            "flag": "flag",
            "argument": "keyword argument",
        }
        return f"{words.get(self.kind, self.kind)} {self.detail}".strip()


DEFAULT = Source("default")


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What the CLI, the docs and ``config show`` need to know about one setting."""

    name: str
    section: str
    description: str
    default: Any
    default_text: str
    accepted: str
    env_names: tuple[str, ...]
    flags: tuple[str, ...]
    negative_flags: tuple[str, ...]
    metavar: Optional[str]
    secret: bool
    kind: str  # bool, int, float, seconds, str, choice, list, args, dict, range

    @property
    def env(self) -> str:
        """The setting's own variable, ``SCRAPERV4_<NAME>``."""
        return self.env_names[0]


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """``Optional[X]`` as ``X``, and ``Annotated[X, ...]`` as ``X`` with its metadata."""
    if typing.get_origin(annotation) is Union:
        args = typing.get_args(annotation)
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is typing.Annotated:
        metadata = [*metadata, *annotation.__metadata__]
        annotation = annotation.__origin__
    return annotation, metadata


def _kind(annotation: Any, metadata: list[Any]) -> str:
    annotation, metadata = _unwrap(annotation, metadata)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice"
    validators = {getattr(m, "func", None) for m in metadata if isinstance(m, BeforeValidator)}
    if annotation is float:
        return "seconds" if _duration in validators else "float"
    if origin is list:
        return "args" if _argument_list in validators else "list"
    return {bool: "bool", int: "int", str: "str", dict: "dict", tuple: "range"}.get(
        origin or annotation, "str"
    )


def _accepted(kind: str, annotation: Any, metadata: list[Any]) -> str:
    annotation, metadata = _unwrap(annotation, metadata)
    bounds: dict[str, Any] = {}
    for m in metadata:
        for limit in ("ge", "gt", "le"):
            if isinstance(m, getattr(annotated_types, limit.capitalize())):
                bounds[limit.capitalize()] = getattr(m, limit)
    low = f">= {bounds['Ge']:g}" if "Ge" in bounds else ""
    low = f"> {bounds['Gt']:g}" if "Gt" in bounds else low
    high = f" and <= {bounds['Le']:g}" if "Le" in bounds else ""
    if kind == "int" and "Ge" in bounds and "Le" in bounds:
        return f"an integer from {bounds['Ge']:g} to {bounds['Le']:g}"
    texts = {
        "bool": "true or false (also 1/0, yes/no, on/off)",
        "choice": "one of " + ", ".join(str(o) for o in typing.get_args(annotation)),
        "int": f"an integer {low}{high}",
        "seconds": f"seconds {low} (30, 2.5, 500ms, 5m, 2h)",
        "float": f"a number {low}{high}",
    }
    return " ".join(texts.get(kind, "text").split())


def _render(value: Any) -> str:
    """A value as it would be written in a variable."""
    if value is None or value in ([], {}):
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(_render(v) for v in value)
    if isinstance(value, dict):
        import json

        return json.dumps(value)
    return str(value)


@functools.cache
def specs(model: type[Settings]) -> dict[str, SettingSpec]:
    """The settings of ``model`` (a role or a section), in declaration order."""
    sections = [c for c in model.__mro__ if issubclass(c, Settings) and vars(c).get("SECTION")]
    result: dict[str, SettingSpec] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict), f"{name} is declared without setting()"
        # Sections are disjoint: a field of none of them is the role's own.
        home = next((c.SECTION for c in sections if name in c.model_fields), model.ROLE)
        kind = _kind(field.annotation, field.metadata)
        flags = extra["flags"]
        result[name] = SettingSpec(
            name=name,
            section=str(home),
            description=str(field.description),
            default=field.default,
            default_text=str(extra["default_text"] or _render(field.default)),
            accepted=str(extra["accepted"] or _accepted(kind, field.annotation, field.metadata)),
            env_names=(ENV_PREFIX + name.upper(), *typing.cast(list[str], extra["env_aliases"])),
            flags=tuple(typing.cast(list[str], flags))
            if flags is not None
            else ("--" + name.replace("_", "-"),),
            negative_flags=tuple(typing.cast(list[str], extra["negative_flags"])),
            metavar=typing.cast(Optional[str], extra["metavar"]),
            secret=bool(extra["secret"]),
            kind=kind,
        )
    return result


def in_order(model: type[Settings]) -> list[SettingSpec]:
    """The settings of ``model``: the role's own first, then the shared sections in their
    usual order (queue, fetch, politeness, adaptive, metrics, logging)."""
    order = [model.ROLE, *SECTIONS]
    return sorted(specs(model).values(), key=lambda spec: order.index(spec.section))


@functools.lru_cache(maxsize=1)
def _all_specs() -> dict[str, SettingSpec]:
    merged: dict[str, SettingSpec] = {}
    for model in ROLES.values():
        for name, spec in specs(model).items():
            merged.setdefault(name, spec)
    return merged


@functools.lru_cache(maxsize=1)
def known_variables() -> frozenset[str]:
    """Every variable a setting reads (``_FILE`` variants of secrets included), plus
    ``SCRAPERV4_ROLE`` and ``SCRAPERV4_CONFIG``."""
    names = {ROLE_ENV, CONFIG_ENV}
    for spec in _all_specs().values():
        names.update(spec.env_names)
        if spec.secret:
            names.update(f"{var}_FILE" for var in spec.env_names)
    return frozenset(names)


_warned: set[str] = set()


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    known = known_variables()
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in known or variable in _warned:
            continue
        _warned.add(variable)
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        log.warning(
            "unknown environment variable %s ignored%s; docs/configuration.md lists every setting",
            variable,
            hint,
        )


# --- the file ----------------------------------------------------------------------------


def read_config_file(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``, ``.yml``) config file.

    Raises:
        ConfigError: the file cannot be read or parsed (the message names it and the line).
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {file}: expected a .toml, .yaml or .yml file")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config file {file}: {error.strerror or error}") from None
    if suffix == ".toml":
        import sys

        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover (Python < 3.11)
            import tomli as tomllib
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {file} is not valid TOML: {error}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {file} is not valid YAML: {error}") from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file}: expected tables of settings at the top")
    return data


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _file_entries(data: dict[str, Any], path: str) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """``(table, name, value)`` for every setting in the file, and the structure errors."""
    everything = _all_specs()
    entries: list[tuple[str, str, Any]] = []
    errors: list[str] = []
    for key, value in data.items():
        if key in SECTIONS or key in ROLES:
            if not isinstance(value, dict):
                errors.append(f"[{key}] must be a table of settings")
                continue
            allowed = specs(SECTIONS[key]) if key in SECTIONS else specs(ROLES[key])
            for name, item in value.items():
                if name in allowed:
                    entries.append((key, name, item))
                elif name in everything:
                    home = everything[name].section
                    where = "a role's table" if home in ROLES else f"[{home}]"
                    errors.append(f"{name} is not a [{key}] setting; it belongs in {where}")
                else:
                    errors.append(
                        f"unknown setting {name} in [{key}]{_suggest(name, list(allowed))}"
                    )
        elif key in everything:
            entries.append(("", key, value))
        else:
            tables = [*SECTIONS, *ROLES, *everything]
            errors.append(f"unknown setting or table {key}{_suggest(key, tables)}")
    return entries, [f"config file {path}: {e}" for e in errors]


def _file_layer(model: type[Settings], path: str) -> Layer:
    entries, errors = _file_entries(read_config_file(path), path)
    if errors:
        raise SettingsError(
            "\n".join(errors),
            errors=[{"source": f"file {path}", "message": e, "text": e} for e in errors],
        )
    ours = specs(model)
    layer: Layer = {}
    # Top-level keys, then the shared sections, then the role's own table: later wins.
    rank = {"": 0, **dict.fromkeys(SECTIONS, 1), **dict.fromkeys(ROLES, 2)}
    for table, name, value in sorted(entries, key=lambda e: rank[e[0]]):
        if name in ours and (table == "" or table in SECTIONS or table == model.ROLE):
            detail = f"{path} [{table}]" if table else path
            layer[name] = (value, Source("file", detail))
    return layer


# --- the environment ---------------------------------------------------------------------


def _env_layer(model: type[Settings], environ: Mapping[str, str]) -> Layer:
    layer: Layer = {}
    for spec in specs(model).values():
        for variable in spec.env_names:
            value = environ.get(variable, "")
            file_variable = f"{variable}_FILE"
            path = environ.get(file_variable, "") if spec.secret else ""
            if value and path:
                raise SettingsError(
                    f"both {variable} and {file_variable} are set: keep one",
                    errors=[{"setting": spec.name, "source": f"env {variable}",
                             "message": "set twice"}],
                )  # fmt: skip
            if path:
                try:
                    value = Path(path).read_text(encoding="utf-8").strip()
                except OSError as error:
                    raise SettingsError(
                        f"{spec.name}: cannot read the file named by {file_variable} "
                        f"({path}): {error.strerror or error}",
                        errors=[{"setting": spec.name, "source": f"env {file_variable}",
                                 "message": "unreadable file"}],
                    ) from None  # fmt: skip
                layer[spec.name] = (value, Source("env", f"{file_variable} ({path})"))
                break
            if value.strip():
                layer[spec.name] = (value, Source("env", variable))
                break
    return layer


# --- loading -----------------------------------------------------------------------------


def _fail(model: type[Settings], problems: list[tuple[str, Any, Source, str]]) -> SettingsError:
    ours = specs(model)
    lines, errors = [], []
    for name, value, source, message in problems:
        spec = ours.get(name)
        shown = "***" if spec is not None and spec.secret else repr(value)
        accepted = f" (accepted: {spec.accepted})" if spec is not None else ""
        line = f"{name} = {shown} from {source.describe()}: {message}{accepted}"
        lines.append(line)
        errors.append({"setting": name, "source": str(source), "message": message, "text": line})
    role = model.ROLE or model.SECTION
    head = (
        lines[0]
        if len(lines) == 1
        else f"{len(lines)} invalid {role} settings:\n  " + "\n  ".join(lines)
    )
    return SettingsError(head, errors=errors)


def build(model: type[S], layers: list[Layer]) -> S:
    """Validate the winning value of each setting across ``layers`` (later wins)."""
    merged: Layer = {}
    for layer in layers:
        merged.update(layer)
    try:
        settings = model.model_validate({name: value for name, (value, _) in merged.items()})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else ""
            value, source = merged.get(name, (item.get("input"), DEFAULT))
            message = item["msg"]
            if len(item["loc"]) > 1:
                message = f"item {item['loc'][1]}: {message}"
            problems.append((name, value, source, message[:1].lower() + message[1:]))
        raise _fail(model, problems) from None
    settings._sources = {name: source for name, (_, source) in merged.items()}
    broken = settings.cross_check()
    if broken:
        raise _fail(
            model,
            [(names[0], getattr(settings, names[0]), settings.source(names[0]),
              message + "".join(f"; {n} = {_render(getattr(settings, n))} from "
                                f"{settings.source(n).describe()}" for n in names[1:]))
             for names, message in broken],
        )  # fmt: skip
    return settings


def load(
    model: type[S],
    *,
    config_file: Optional[Union[str, os.PathLike[str]]] = None,
    flags: Optional[Mapping[str, tuple[Any, str]]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> S:
    """Load the settings of ``model`` from every layer.

    Args:
        model: a role model (:class:`~scraperv4.settings.WorkerSettings`, ...).
        config_file: the config file (default: ``$SCRAPERV4_CONFIG``, else none).
        flags: ``name -> (value, flag as typed)`` from the command line.
        overrides: keyword arguments given in Python (``None`` values are ignored).
        environ: the environment (default ``os.environ``).

    Raises:
        SettingsError: a bad value (the message names the setting, its source and the
            accepted values), an unreadable or malformed config file.
    """
    environ = os.environ if environ is None else environ
    _warn_unknown_variables(environ)
    layers: list[Layer] = []
    path = os.fspath(config_file) if config_file is not None else environ.get(CONFIG_ENV, "")
    if path:
        layers.append(_file_layer(model, path))
    layers.append(_env_layer(model, environ))
    if flags:
        layers.append(
            {name: (value, Source("flag", flag)) for name, (value, flag) in flags.items()}
        )
    if overrides:
        unknown = sorted(set(overrides) - set(model.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown {model.ROLE} setting {unknown[0]!r}"
                f"{_suggest(unknown[0], list(model.model_fields))}"
            )
        layers.append({name: (value, Source("argument", name))
                       for name, value in overrides.items() if value is not None})  # fmt: skip
    return build(model, layers)


def with_overrides(settings: S, overrides: Mapping[str, Any]) -> S:
    """``settings`` with keyword arguments from Python on top (``None`` values ignored)."""
    model = type(settings)
    unknown = sorted(set(overrides) - set(model.model_fields))
    if unknown:
        raise ConfigError(f"unknown {model.ROLE} setting {unknown[0]!r}")
    below: Layer = {name: (getattr(settings, name), source)
                    for name, source in settings._sources.items()}  # fmt: skip
    above: Layer = {name: (value, Source("argument", name))
                    for name, value in overrides.items() if value is not None}  # fmt: skip
    return build(model, [below, above])


def resolve(model: type[S], settings: Optional[S], overrides: Mapping[str, Any]) -> S:
    """What a role built in Python runs with: ``settings`` (default: loaded from the config
    file and the environment) with its keyword arguments on top."""
    if settings is None:
        return load(model, overrides=overrides)
    return with_overrides(settings, overrides)
