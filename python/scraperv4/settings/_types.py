"""Value types of the settings model: how a value written as text (an environment variable,
a flag) or in a config file becomes a typed value, and the ``setting()`` field helper that
records each setting's variable, flags and meaning for the CLI, the docs and ``config show``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = [
    "Address",
    "ArgList",
    "DelayRange",
    "Headers",
    "Seconds",
    "StrList",
    "setting",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: Any) -> Any:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"`` or a plain number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError("expected seconds, e.g. 30, 2.5, 500ms, 30s, 5m or 2h")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


def _string_list(value: Any) -> Any:
    """A JSON array, or comma-separated text (blank items dropped)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _argument_list(value: Any) -> Any:
    """A JSON array, or text split like a shell command line."""
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text.startswith("[") else shlex.split(text)
    return value


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


def _delay_range(value: Any) -> Any:
    """``"MIN,MAX"``, ``"MIN MAX"``, ``"[MIN, MAX]"``, a list, or one number for both."""
    if isinstance(value, str):
        text = value.strip()
        parts = json.loads(text) if text.startswith("[") else re.split(r"[\s,]+", text)
        value = [_duration(p) if isinstance(p, str) else p for p in parts if p != ""]
    if isinstance(value, (int, float)):
        return (value, value)
    return value


def _ordered_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not (0 <= low <= high):
        raise ValueError("expected 0 <= MIN <= MAX")
    return value


def _off_is_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "false", "no"):
        return None
    return value


def _socket_address(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        ok = sep == ":" and port.isdigit() and int(port) <= 65535
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("expected IP:PORT, e.g. 0.0.0.0:9100 or [::]:9100, or off")
    return value


#: Seconds; text may carry a unit (``500ms``, ``30s``, ``5m``, ``2h``).
Seconds = Annotated[float, BeforeValidator(_duration)]
#: A list of strings; text is a JSON array or comma-separated.
StrList = Annotated[list[str], BeforeValidator(_string_list)]
#: A list of command-line arguments; text is a JSON array or split like a shell would.
ArgList = Annotated[list[str], BeforeValidator(_argument_list)]
#: Header names to values; text is a JSON object.
Headers = Annotated[dict[str, str], BeforeValidator(_json_object)]
#: ``(min, max)`` seconds.
DelayRange = Annotated[
    tuple[float, float], BeforeValidator(_delay_range), AfterValidator(_ordered_range)
]
#: ``IP:PORT`` to listen on, or ``None`` (written ``off``).
Address = Annotated[Optional[str], BeforeValidator(_off_is_none), AfterValidator(_socket_address)]


def setting(
    default: Any,
    description: str,
    *,
    accepted: Optional[str] = None,
    env_aliases: tuple[str, ...] = (),
    flags: Optional[tuple[str, ...]] = None,
    negative_flags: tuple[str, ...] = (),
    metavar: Optional[str] = None,
    secret: bool = False,
    default_text: Optional[str] = None,
    **constraints: Any,
) -> Any:
    """A setting of the model.

    Args:
        default: the built-in default.
        description: one sentence for ``--help`` and ``docs/configuration.md``.
        accepted: what values are accepted, when the type and constraints do not say it well.
        env_aliases: older variable names still read (after ``SCRAPERV4_<NAME>``).
        flags: the command-line flags (default ``--<name-with-dashes>``); ``()`` for none.
        negative_flags: flags that set a boolean setting to false (``--no-<name>`` is added
            for every boolean flag).
        metavar: the value's name in ``--help``.
        secret: masked by ``config show``; also read from the file named by ``<VAR>_FILE``.
        default_text: the default as the docs say it, when it is computed (``None`` here).
        constraints: pydantic constraints (``ge``, ``gt``, ``le``, ``pattern``, ...).
    """
    extra: dict[str, Any] = {
        "accepted": accepted,
        "env_aliases": list(env_aliases),
        "flags": None if flags is None else list(flags),
        "negative_flags": list(negative_flags),
        "metavar": metavar,
        "secret": secret,
        "default_text": default_text,
    }
    return Field(default, description=description, json_schema_extra=extra, **constraints)
