"""Type stubs for the Rust extension module ``scraperv4._core``.

Private: import the public names from :mod:`scraperv4` instead. Kept in step with
``src/python/`` by ``mypy.stubtest`` in ``make test``.
"""

__version__: str

def set_log_level(level: str) -> None:
    """Set the ``scraperv4`` logger's level; ``ConfigError`` for an unknown level name."""

def _block_for(seconds: float) -> float:
    """Wait ``seconds`` on the Rust runtime with the GIL released; returns the time waited.

    Internal: exercises the sync bridge (GIL release, Ctrl-C) in the test-suite.
    """

async def _sleep_async(seconds: float) -> float:
    """Sleep ``seconds`` on the Rust runtime; returns the time slept.

    Internal: exercises the asyncio bridge (awaiting, cancellation) in the test-suite.
    """
