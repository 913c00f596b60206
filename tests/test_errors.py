"""Rust errors arrive in Python as the right exception class, with their message."""

from __future__ import annotations

import pytest

import scraperv4
from scraperv4 import _core
from scraperv4.exceptions import (
    ConfigError,
    FetchError,
    QueueError,
    ScraperV4Error,
    TemplateError,
)


def test_a_rust_config_error_is_a_config_error_and_a_value_error() -> None:
    with pytest.raises(ConfigError) as caught:
        scraperv4.set_log_level("loud")
    error = caught.value
    assert isinstance(error, ScraperV4Error)
    assert isinstance(error, ValueError)
    assert "log level" in str(error)
    assert "'loud'" in str(error) or '"loud"' in str(error)
    assert "debug" in str(error), "the message lists the accepted values"


def test_an_error_inside_a_bridged_call_keeps_its_class() -> None:
    with pytest.raises(ConfigError, match="seconds"):
        _core._block_for(-1.0)
    with pytest.raises(ConfigError, match="seconds"):
        _core._block_for(float("nan"))


def test_the_hierarchy_matches_what_callers_catch() -> None:
    assert issubclass(QueueError, ScraperV4Error)
    assert issubclass(FetchError, ScraperV4Error)
    assert issubclass(TemplateError, ValueError)
    error = FetchError("boom", kind="timeout", url="http://127.0.0.1/")
    assert (error.kind, error.url, str(error)) == ("timeout", "http://127.0.0.1/", "boom")
