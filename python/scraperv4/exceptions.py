"""The exceptions ScraperV4 raises.

Every error raised by the package is a :class:`ScraperV4Error`; catch the subclass for the
subsystem you care about. Where Python code conventionally expects a builtin, the class also
derives from it: a :class:`ConfigError` is a :class:`ValueError`, so code written against the
pure-Python seed that caught ``ValueError`` keeps working.

The Rust core raises these exact classes (see ``src/python/errors.rs``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FetchError",
    "QueueError",
    "ScraperV4Error",
    "TemplateError",
]


class ScraperV4Error(Exception):
    """Base class of every error raised by scraperv4."""


class ConfigError(ScraperV4Error, ValueError):
    """A setting or argument that cannot be used; the message says which and why."""


class QueueError(ScraperV4Error):
    """The job queue could not do what was asked (backend unreachable, corrupt job, ...)."""


class FetchError(ScraperV4Error):
    """A page could not be fetched.

    Attributes:
        kind: a machine-readable reason: ``timeout``, ``dns``, ``connect``, ``tls``,
            ``too_large``, ``robots_denied``, ``blocked_address``, ``http_status``,
            ``too_many_redirects`` or ``decode``.
        url: the URL that failed, when known.
    """

    def __init__(self, message: str, kind: str = "unknown", url: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.url = url


class TemplateError(ScraperV4Error, ValueError):
    """A template that cannot be used: invalid selector, unknown key, missing field, ...

    Attributes:
        template_id: the template's id, when known.
        field: the field at fault, when the problem is in one field.
    """

    def __init__(
        self, message: str, template_id: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.template_id = template_id
        self.field = field
