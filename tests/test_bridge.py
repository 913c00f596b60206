"""The sync and asyncio bridges to the Rust runtime."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scraperv4 import _core
from support.ticker import Ticker


def test_a_sync_call_releases_the_gil() -> None:
    with Ticker() as ticker:
        before = ticker.ticks
        waited = _core._block_for(0.5)
        during = ticker.ticks - before
    assert waited >= 0.5
    # With the GIL held for 0.5 s the other thread could not tick at all.
    assert during > 20, f"the other thread ticked only {during} times"


def test_an_async_call_is_awaited_from_asyncio() -> None:
    async def main() -> float:
        return await _core._sleep_async(0.05)

    assert asyncio.run(main()) >= 0.05


def test_async_calls_run_concurrently() -> None:
    async def main() -> list[float]:
        return await asyncio.gather(*(_core._sleep_async(0.3) for _ in range(10)))

    started = time.monotonic()
    slept = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert all(s >= 0.3 for s in slept)
    assert elapsed < 2.0, f"10 x 0.3 s took {elapsed:.2f} s: the sleeps ran one after another"


def test_cancelling_an_awaitable_stops_it() -> None:
    async def main() -> float:
        task = asyncio.ensure_future(_core._sleep_async(30.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 1.0


def test_asyncio_wait_for_times_out_a_rust_future() -> None:
    async def main() -> None:
        await asyncio.wait_for(_core._sleep_async(30.0), timeout=0.1)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())


def test_ctrl_c_interrupts_a_blocking_call() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from scraperv4 import _core
        print("ready", flush=True)
        started = time.monotonic()
        try:
            _core._block_for(30.0)
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - started:.2f}", flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, out
    assert float(out.split()[-1]) < 5.0


def _child_uses_runtime(result: multiprocessing.Queue[float]) -> None:
    result.put(_core._block_for(0.05))


def test_a_forked_child_gets_a_working_runtime() -> None:
    _core._block_for(0.01)  # the parent's runtime exists before the fork
    context = multiprocessing.get_context("fork")
    result: multiprocessing.Queue[float] = context.Queue()
    child = context.Process(target=_child_uses_runtime, args=(result,))
    child.start()
    child.join(timeout=20)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung on the inherited runtime")
    assert child.exitcode == 0
    assert result.get(timeout=1) >= 0.05
    assert _core._block_for(0.01) >= 0.01, "the parent's runtime still works"
