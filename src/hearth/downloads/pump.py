"""The download's hot loop: copy one response body into the `.part` on a worker thread.

Why a thread and not the event loop: per chunk, the async path paid for an await, a queue hop
to the write thread and another to the hash thread, plus the allocations of 64 KiB `bytes`
that h11 copies several times. Here one thread per connection runs `readinto` -> `pwrite` on
one reusable buffer, and the hash thread follows a few MiB behind (`PartWriter.land`). recv,
pwrite and sha256 all release the GIL, so the copy and the hash run side by side on two cores.

One 256 KiB buffer per connection: it stays in the core's cache between the recv that fills
it and the pwrite that empties it, and it is large enough that the Python work per buffer
(a few microseconds) is noise next to the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from hearth.downloads.common import Transient
from hearth.downloads.state import PartWriter, Segment
from hearth.downloads.wire import NETWORK_ERRORS, Stopper, WireResponse

T = TypeVar("T")
BUFFER_BYTES = 256 << 10
TICK_SECONDS = 0.1


async def run_blocking(
    executor: Executor,
    stopper: Stopper,
    fn: Callable[..., T],
    *args: object,
    discard: Callable[[T], object] | None = None,
) -> T:
    """Run `fn(*args)` on `executor`; if we are cancelled, stop it and wait until it has stopped.

    Waiting matters: the thread writes into the `.part` through the writer's fd, so the caller
    must not close the writer (or publish the file) while the thread could still touch it.
    A result that lands as we are cancelled (an opened response) reaches nobody: `discard`
    gets it, so its socket is closed rather than left to the garbage collector.
    """
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(executor, functools.partial(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        stopper.stop()
        while not fut.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([fut])
        if not fut.cancelled() and fut.exception() is None and discard is not None:
            discard(fut.result())  # (the exception, if any, is retrieved: it no longer matters)
        raise


def pump(
    resp: WireResponse,
    writer: PartWriter,
    seg: Segment,
    pos: int,
    stopper: Stopper,
    check_head: Callable[[bytes], None],
    tick: Callable[[], None],
    limit: int,
) -> tuple[int, Transient | None]:
    """Worker thread: copy the body from `pos` until the range ends; returns (next offset, error).

    A network error or an early end is returned, not raised, so the caller retries from the
    bytes already landed. `check_head` sees the first bytes of the file (the GGUF magic check)
    and `tick` is called after each buffer (the caller rate-limits progress and sidecar saves).
    A range of unknown size stops at offset `limit` (the caller's size and disk cap), which
    costs no more per buffer than the known-size case.
    """
    buffer = memoryview(bytearray(BUFFER_BYTES))
    end = seg.end if seg.end is not None else limit
    while pos < end and not stopper.stopped:
        want = min(BUFFER_BYTES, end - pos)
        try:
            count = resp.readinto(buffer[:want])
        except NETWORK_ERRORS as exc:
            return pos, Transient(f"{type(exc).__name__} after {pos} bytes")
        if not count or stopper.stopped:
            break
        if pos == 0:
            check_head(bytes(buffer[: min(count, 4)]))
        writer.land(seg, pos, buffer[:count])
        pos += count
        tick()
    return pos, None


class Ticker:
    """Turns per-buffer calls from worker threads into at most ~10 calls a second on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop, self._callback, self._last = loop, callback, 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= TICK_SECONDS:
            self._last = now
            self._loop.call_soon_threadsafe(self._callback)
