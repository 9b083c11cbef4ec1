"""Many concurrent callers, one run of the work at a time, and never a stale answer.

`FreshRun` is single-flight with a freshness rule: a caller gets the result of a run that
*started after it called*. If a run is in progress, the caller waits for the next one, which every
caller arriving meanwhile shares. So N concurrent callers cost at most two runs instead of N, and
each still sees everything that happened before it asked, which a cache (even a short-lived one)
cannot promise. GET /v1/models uses it: 50 clients listing 5,000 folders share one scan per round
instead of queueing 50 scans on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class FreshRun(Generic[T]):
    """Share runs of `produce` among concurrent callers of `get` (one event loop)."""

    def __init__(self, produce: Callable[[], Awaitable[T]]) -> None:
        self._produce = produce
        self._next: asyncio.Future[T] | None = None  # the result of a run that has not started
        self._runner: asyncio.Task[None] | None = None

    async def get(self) -> T:
        """The result of a run that starts after this call (shared with other callers)."""
        loop = asyncio.get_running_loop()
        if self._runner is not None and self._runner.get_loop() is not loop:
            self._runner = self._next = None  # an earlier event loop ended during a run
        if self._next is None:
            self._next = loop.create_future()
        result = self._next
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        # shield: one caller that goes away (a closed connection) must not cancel the others' run
        return await asyncio.shield(result)

    async def _run(self) -> None:
        """Run back to back while callers wait; each run answers those who came before it."""
        try:
            while self._next is not None:
                result, self._next = self._next, None  # later callers wait for the next run
                try:
                    value = await self._produce()
                except asyncio.CancelledError:
                    result.cancel()
                    raise
                except Exception as exc:
                    result.set_exception(exc)
                else:
                    result.set_result(value)
        finally:
            if self._next is not None:  # cancelled (shutdown): no run is coming for these
                self._next.cancel()
                self._next = None
            self._runner = None
