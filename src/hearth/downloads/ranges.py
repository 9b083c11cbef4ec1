"""Fetching the ranges of one download: open with retries, then copy the body into the `.part`.

Split from `transfer.py` (which plans, resumes, verifies and publishes) to keep both readable.
`RangeFetcher` is built from a `RangeContext` (what one download's ranges share) and runs
`fetch` per range: open through the download's `Transport`, check that a 206 continues the same
file, copy the body, and on a transient failure back off and ask again for the bytes still
missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from hearth.core.errors import InsufficientStorage, InvalidModelFile
from hearth.downloads import common
from hearth.downloads.common import (
    STALL_BYTES,
    Backoff,
    BodyTooLarge,
    ProgressCallback,
    Restart,
    Transient,
    Unsatisfiable,
    human,
)
from hearth.downloads.request import check_same_file
from hearth.downloads.space import LEDGER, Claim
from hearth.downloads.state import PartState, PartWriter, Segment, save_state
from hearth.downloads.transport import Reply, Transport

GGUF_MAGIC = b"GGUF"


def ranges_ignored(resp: Reply, state: PartState) -> bool:
    """A 200 to a Range request for the same file (same or no ETag): the server ignores Range."""
    etag = resp.headers.get("etag")
    return not etag or not state.etag or etag == state.etag


@dataclass
class Progress:
    """The byte count of one download, shared by the transfer and its ranges, and its report.

    `claim` is the download's promise in the disk ledger; what has landed since `claim_from`
    no longer needs to be promised.
    """

    callback: ProgressCallback | None
    received: int = 0
    total: int | None = None
    claim: Claim | None = None
    claim_from: int = 0
    last_report: float = 0.0

    def report(self, force: bool = False) -> None:
        if self.claim is not None:
            self.claim.landed = self.received - self.claim_from
        now = time.monotonic()
        if self.callback is not None and (force or now - self.last_report >= 0.1):
            self.last_report = now
            self.callback(self.received, self.total)


@dataclass(frozen=True)
class RangeContext:
    """What the ranges of one download share: where from, where to, the limits, the transport."""

    url: str
    where: str  # the URL as errors show it (`urls.redact_url`)
    dest: Path
    filename: str
    sidecar: Path
    headers: dict[str, str]
    require_gguf: bool
    backoff: tuple[int, float, float]
    stall_seconds: float
    reserve_bytes: int
    max_bytes: int
    transport: Transport
    progress: Progress = field(repr=False)


class RangeFetcher:
    """Fetches the ranges of one download (all of them: one fetcher per download)."""

    def __init__(self, ctx: RangeContext) -> None:
        self.ctx = ctx
        self.progress = ctx.progress
        self._allowed = 0  # the cap on a body of unknown size (see `_cap`)
        self._last_save = 0.0

    async def open_retrying(
        self, start: int | None, end: int | None, state: PartState | None
    ) -> Reply:
        """Open a range, retrying transient failures with backoff."""
        backoff = Backoff(*self.ctx.backoff)
        while True:
            try:
                return await self._open(start, end, state)
            except Transient as exc:
                await backoff.wait(exc, f"downloading {self.ctx.filename}")
            except Unsatisfiable:
                raise Restart("The server refused the saved range (the file changed)") from None

    async def _open(self, start: int | None, end: int | None, st: PartState | None) -> Reply:
        """Send the request and wait for the headers, within the stall deadline."""
        stall = self.ctx.stall_seconds
        try:
            return await asyncio.wait_for(self._send(start, end, st), stall)
        except TimeoutError:
            raise Transient(f"no response within {stall:g} s") from None

    async def _send(self, start: int | None, end: int | None, st: PartState | None) -> Reply:
        return await self.ctx.transport.open(self.ctx.url, self.ctx.headers, start, end, st)

    async def fetch(self, writer: PartWriter, seg: Segment, resp: Reply | None) -> None:
        """Fetch the rest of one range, retrying from the last received byte on transient errors.

        The retry budget resets only after real progress (`STALL_BYTES`), not after any byte, so
        a drip feed cannot hold a download slot forever.
        """
        backoff = Backoff(*self.ctx.backoff)
        pos = seg.pos
        while seg.end is None or pos < seg.end:
            start = pos
            try:
                work = self._attempt_range(writer, seg, resp, pos)
                pos, error = await self._watched(work, seg)
            except Transient as exc:
                await writer.flush()
                pos, error = seg.pos, exc
            resp = None
            if error is None and seg.end is None:
                self._check_cap(pos)
                seg.end = writer.state.total = self.progress.total = pos
                await writer.flush()
                return
            if error is None and pos < seg.end:  # type: ignore[operator]
                error = Transient(f"connection closed after {pos - start} bytes")
            if error is not None:
                if pos - start >= STALL_BYTES:
                    backoff.attempt = 0
                await backoff.wait(error, f"{self.ctx.filename} at byte {pos}")

    async def _watched(
        self, work: Awaitable[tuple[int, Transient | None]], seg: Segment
    ) -> tuple[int, Transient | None]:
        """Run one attempt; stop it when less than `STALL_BYTES` arrive in a stall window."""
        stall = self.ctx.stall_seconds
        task = asyncio.ensure_future(work)
        mark = max(seg.pos, seg.arrived)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=stall)
                if done:
                    return task.result()
                now = max(seg.pos, seg.arrived)
                if now - mark < STALL_BYTES:
                    raise Transient(f"less than {STALL_BYTES >> 10} KiB arrived in {stall:g} s")
                mark = now
        finally:
            task.cancel()  # a no-op once done; gather also retrieves a failure nobody awaited
            await asyncio.gather(task, return_exceptions=True)

    async def _attempt_range(
        self, writer: PartWriter, seg: Segment, resp: Reply | None, pos: int
    ) -> tuple[int, Transient | None]:
        """Open (unless `resp` is given), check that the answer continues our bytes, copy them."""
        if resp is None:
            resp = await self._send(pos, seg.end, writer.state)
        try:
            if resp.status_code == 206:
                check_same_file(resp, pos, writer.state)
            elif pos != 0:
                ignored = ranges_ignored(resp, writer.state)
                raise Restart(
                    "The server sent the whole file instead of the missing part",
                    ranges_ignored=ignored,
                )
            limit = seg.end if seg.end is not None else self._cap(pos) + 1
            return await self.ctx.transport.copy(resp, writer, seg, pos, limit, self)
        finally:
            await resp.aclose()

    def _cap(self, pos: int) -> int:
        """The last offset a body of unknown size may reach: `max_bytes`, or the disk's reserve.

        Free space is shared with the other downloads to this disk (their promised bytes are
        taken off), and `reserve_bytes` always stay free.
        """
        ctx = self.ctx
        room = common.disk_free(ctx.dest) - ctx.reserve_bytes - LEDGER.promised(ctx.dest)
        self._allowed = min(ctx.max_bytes, pos + max(0, room))
        return self._allowed

    def _check_cap(self, pos: int) -> None:
        """Raise when a body of unknown size ran past its cap (the caller deletes the `.part`)."""
        if pos <= self._allowed:
            return
        ctx = self.ctx
        if self._allowed >= ctx.max_bytes:
            raise BodyTooLarge(
                f"{ctx.where} sent more than {human(ctx.max_bytes)} without stating a size, "
                "the limit for such downloads (max_download_bytes); the partial file was "
                "deleted. Raise max_download_bytes if the file really is that large."
            )
        raise InsufficientStorage(
            f"The disk holding {ctx.dest} is nearly full: {ctx.filename} (of unstated size) "
            f"stopped at {human(pos - 1)} to keep {human(ctx.reserve_bytes)} free "
            "(download_reserve_bytes); the partial file was deleted. Free some space and pull "
            "again."
        )

    # ---- the `transport.Sink` the copies report to ----------------------------------------

    def check_head(self, head: bytes) -> None:
        """The first bytes of the file must be the GGUF magic (unless `require_gguf` is off)."""
        if self.ctx.require_gguf and head[:4] != GGUF_MAGIC[: len(head[:4])]:
            raise InvalidModelFile(
                f"{self.ctx.where} is not a GGUF model file (it does not start with the GGUF "
                "magic); the partial file was deleted. Check that the URL points at a .gguf "
                "file and not at a web page.",
                param="url",
            )

    def arrived(self, count: int) -> None:
        self.progress.received += count
        self.progress.report()

    def tick(self, writer: PartWriter) -> None:
        """On the loop, ~10 times a second: report progress; save the sidecar every second."""
        self.progress.received = max(self.progress.received, writer.state.done)
        self.progress.report()
        self.save_soon(writer)

    def save_soon(self, writer: PartWriter) -> None:
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            self._last_save = now
            with contextlib.suppress(OSError):  # a full disk: the writes report it
                save_state(self.ctx.sidecar, writer.state)
