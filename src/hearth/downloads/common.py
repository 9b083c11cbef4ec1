"""Shared pieces of the download code: its errors, its result, retry backoff, header parsing."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

# The download errors live in the one error tree; imported here for the download code.
from hearth.core.errors import BodyTooLarge, ChecksumMismatch, DownloadCancelled, DownloadFailed

__all__ = [
    "BodyTooLarge",
    "ChecksumMismatch",
    "DownloadCancelled",
    "DownloadFailed",
]

log = logging.getLogger("hearth.downloads.transfer")

T = TypeVar("T")
STALL_BYTES = 64 << 10  # a connection must move this much per stall window (see `ranges.py`)
STALL_SECONDS = 60.0
ProgressCallback = Callable[[int, int | None], None]


class CancelEvent(Protocol):
    """Anything with `is_set()` and an awaitable `wait()`: asyncio.Event or anyio.Event."""

    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


@dataclass(frozen=True)
class DownloadResult:
    """What happened: the final path, its size and sha256, and how the transfer went."""

    path: Path
    size: int
    sha256: str
    resumed_from: int
    restarted: bool
    note: str | None = None


class Transient(Exception):
    """A failure worth retrying; `retry_after` comes from the server when it says so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Restart(Exception):
    """The server no longer serves the bytes we have (200 to a Range, new ETag): start over.

    `ranges_ignored` tells a server that answers every Range with the whole (same) file from
    one whose file changed, so the first is reported as "no range support", not as a change.
    """

    def __init__(self, message: str, *, ranges_ignored: bool = False) -> None:
        super().__init__(message)
        self.ranges_ignored = ranges_ignored


class Unsatisfiable(Exception):
    """416: the file on the server is shorter than the range we asked for."""


class Backoff:
    """Exponential backoff with jitter; the attempt count resets whenever bytes arrive."""

    def __init__(self, retries: int, base: float, cap: float) -> None:
        self.retries, self.base, self.cap, self.attempt = retries, base, cap, 0

    async def wait(self, exc: Transient, what: str) -> None:
        self.attempt += 1
        if self.attempt > self.retries:
            raise DownloadFailed(
                f"Gave up on {what} after {self.retries} retries: {exc}. "
                "Check the network or the server, then pull again: the download resumes."
            ) from None
        delay = min(self.cap, self.base * 2 ** (self.attempt - 1)) * random.uniform(0.5, 1.0)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.cap))
        log.info("retrying %s in %.2fs (attempt %d): %s", what, delay, self.attempt, exc)
        await asyncio.sleep(delay)


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem holding `path` (a seam for the space check)."""
    return shutil.disk_usage(path).free


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1000
    return f"{n} B"


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """Parse `bytes a-b/total` (total may be `*`)."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, _, total = value[6:].partition("/")
        first, _, last = span.partition("-")
        return int(first), int(last), None if total.strip() == "*" else int(total)
    except ValueError:
        return None


def body_length(resp: Any, where: str) -> int | None:
    """The body size a response states, None if it states none; refuse a malformed one.

    A negative or non-numeric Content-Length once reached `ftruncate` and ended as a traceback;
    it is a broken server, so the download stops with a clear error instead.
    """
    value = resp.headers.get("content-length")
    if value is None or resp.headers.get("content-encoding", "identity") != "identity":
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise DownloadFailed(
            f"The server at {where} sent an invalid Content-Length (not a whole number of "
            "bytes), so the download was refused. The server is misbehaving; try another mirror."
        )
    return int(value)


def disk_full(exc: OSError) -> bool:
    """ENOSPC or EDQUOT: the disk (or the user's quota) is full."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


async def unless_cancelled(work: Awaitable[T], cancel: CancelEvent | None, name: str) -> T:
    """Run `work`, stopping it as soon as `cancel` is set (even mid-request or mid-backoff)."""
    if cancel is None:
        return await work
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise DownloadCancelled(
            f"Download of {name} cancelled; the partial file is kept and the next pull resumes it."
        )
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
