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
    "CorruptJobError",
    "ExtractionLimitError",
    "FetchError",
    "InvalidJobError",
    "JobNotFoundError",
    "QueueError",
    "QueueUnavailableError",
    "ResultsError",
    "ScraperV4Error",
    "SettingsError",
    "TemplateError",
    "WorkerError",
]


class ScraperV4Error(Exception):
    """Base class of every error raised by scraperv4."""


class ConfigError(ScraperV4Error, ValueError):
    """A setting or argument that cannot be used; the message says which and why."""


class SettingsError(ConfigError):
    """Settings that cannot be used: the message names each setting, where its value came
    from (default, config file, environment variable, flag, keyword argument) and what is
    accepted.

    Attributes:
        errors: one dict per problem, with ``setting`` (when one is at fault), ``source``
            and ``message``.
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors or [])


class QueueError(ScraperV4Error):
    """The job queue could not do what was asked.

    Attributes:
        job_id: the job concerned, when the error is about one job.
    """

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class QueueUnavailableError(QueueError, ConnectionError):
    """The queue backend could not be reached or did not answer in time.

    The message names the backend URL (password removed) and the operation. Nothing was
    changed by the failed call, or it will be undone by lease expiry.
    """


class InvalidJobError(QueueError, ValueError):
    """A job was refused at submission (bad URL, config not a JSON object or too big, ...)."""


class JobNotFoundError(QueueError, KeyError):
    """No job with this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorruptJobError(QueueError):
    """A job's stored record cannot be read (edited by hand?). Other jobs are unaffected."""


class FetchError(ScraperV4Error):
    """A page could not be fetched.

    Attributes:
        kind: a machine-readable reason: ``timeout``, ``dns``, ``connect``, ``tls``,
            ``too_large``, ``robots_denied``, ``blocked_address``, ``http_status``,
            ``too_many_redirects`` or ``decode``.
        url: the URL that failed, when known.
        status: the HTTP status, for ``kind == "http_status"``.
    """

    def __init__(
        self,
        message: str,
        kind: str = "unknown",
        url: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.url = url
        self.status = status


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


class ExtractionLimitError(ScraperV4Error):
    """A page broke a per-page extraction cap: too many item elements or links, extracted
    values too large for the page's size (nested items repeating its text), or too long to
    extract. The message names the cap; a worker fails such a job for good."""


class WorkerError(ScraperV4Error):
    """A worker could not start or run: already running, metrics port in use, ..."""


class ResultsError(ScraperV4Error, OSError):
    """Results could not be written to or read from a results file (the message names it)."""
