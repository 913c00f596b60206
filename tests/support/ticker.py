"""A background thread that counts while the main thread is busy: a GIL-release probe."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Optional


class Ticker:
    """Counts ~1 ms ticks in a thread; if a call holds the GIL, ``ticks`` stays near 0."""

    def __init__(self) -> None:
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.ticks += 1
            time.sleep(0.001)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self._stop.set()
        self._thread.join()
