"""Fetching the ranges of one download: open with retries, then copy the body into the `.part`.

Split from `transfer.py` (which plans, resumes, verifies and publishes) to keep both readable.
Each range runs `_fetch`: open (fast path: `wire.open_wire` on a worker thread; else httpx),
check that a 206 continues the same file, copy the body, and on a transient failure back off
and ask again for the bytes still missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

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
from hearth.downloads.pump import Ticker, pump, run_blocking
from hearth.downloads.request import check_same_file, open_range, range_headers
from hearth.downloads.space import LEDGER, Claim
from hearth.downloads.state import PartState, PartWriter, Segment, save_state
from hearth.downloads.wire import Stopper, WireResponse, open_wire
from hearth.errors import InsufficientStorage, InvalidModelFile

GGUF_MAGIC = b"GGUF"
BATCH_BYTES = 1 << 20
Response = httpx.Response | WireResponse


def ranges_ignored(resp: Response, state: PartState) -> bool:
    """A 200 to a Range request for the same file (same or no ETag): the server ignores Range."""
    etag = resp.headers.get("etag")
    return not etag or not state.etag or etag == state.etag


class RangeFetcher:
    """The per-range half of `transfer._Transfer` (a dataclass that provides these fields)."""

    url: str
    dest: Path
    filename: str
    headers: dict[str, str]
    progress: ProgressCallback | None
    require_gguf: bool
    backoff: tuple[int, float, float]
    timeout: float
    stall_seconds: float
    reserve_bytes: int
    max_bytes: int
    allow_private: bool
    received: int
    total: int | None
    no_ranges: bool
    _allowed: int
    _claim: Claim | None
    _claim_from: int
    _last_report: float
    _last_save: float
    _pool: ThreadPoolExecutor | None

    @property
    def sidecar(self) -> Path:
        raise NotImplementedError

    @property
    def where(self) -> str:
        raise NotImplementedError

    def _report(self, force: bool = False) -> None:
        if self._claim is not None:  # what has landed no longer needs to be promised
            self._claim.landed = self.received - self._claim_from
        now = time.monotonic()
        if self.progress is not None and (force or now - self._last_report >= 0.1):
            self._last_report = now
            self.progress(self.received, self.total)

    async def _open_retrying(
        self,
        client: httpx.AsyncClient | None,
        start: int | None,
        end: int | None,
        state: PartState | None,
    ) -> Response:
        backoff = Backoff(*self.backoff)
        while True:
            try:
                return await self._open(client, start, end, state)
            except Transient as exc:
                await backoff.wait(exc, f"downloading {self.filename}")
            except Unsatisfiable:
                raise Restart("The server refused the saved range (the file changed)") from None

    async def _open(
        self,
        client: httpx.AsyncClient | None,
        start: int | None,
        end: int | None,
        st: PartState | None,
    ) -> Response:
        """Send the request and wait for the headers, within the stall deadline."""
        try:
            return await asyncio.wait_for(self._send(client, start, end, st), self.stall_seconds)
        except TimeoutError:
            raise Transient(f"no response within {self.stall_seconds:g} s") from None

    async def _send(
        self,
        client: httpx.AsyncClient | None,
        start: int | None,
        end: int | None,
        st: PartState | None,
    ) -> Response:
        if client is not None:
            return await open_range(
                client, self.url, self.headers, start, end, st, allow_private=self.allow_private
            )
        assert self._pool is not None
        headers = range_headers(self.headers, start, end, st)
        stopper = Stopper()
        return await run_blocking(
            self._pool, stopper, open_wire, self.url, headers, self.timeout, stopper,
            self.allow_private, discard=WireResponse.close,
        )  # fmt: skip

    async def _fetch(
        self,
        client: httpx.AsyncClient | None,
        writer: PartWriter,
        seg: Segment,
        resp: Response | None,
    ) -> None:
        """Fetch the rest of one range, retrying from the last received byte on transient errors.

        The retry budget resets only after real progress (`STALL_BYTES`), not after any byte, so
        a drip feed cannot hold a download slot forever.
        """
        backoff = Backoff(*self.backoff)
        pos = seg.pos
        while seg.end is None or pos < seg.end:
            start = pos
            try:
                work = self._attempt_range(client, writer, seg, resp, pos)
                pos, error = await self._watched(work, seg)
            except Transient as exc:
                await writer.flush()
                pos, error = seg.pos, exc
            resp = None
            if error is None and seg.end is None:
                self._check_cap(pos)
                seg.end = writer.state.total = self.total = pos
                await writer.flush()
                return
            if error is None and pos < seg.end:  # type: ignore[operator]
                error = Transient(f"connection closed after {pos - start} bytes")
            if error is not None:
                if pos - start >= STALL_BYTES:
                    backoff.attempt = 0
                await backoff.wait(error, f"{self.filename} at byte {pos}")

    async def _watched(
        self, work: Awaitable[tuple[int, Transient | None]], seg: Segment
    ) -> tuple[int, Transient | None]:
        """Run one attempt; stop it when less than `STALL_BYTES` arrive in a stall window."""
        task = asyncio.ensure_future(work)
        mark = max(seg.pos, seg.arrived)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.stall_seconds)
                if done:
                    return task.result()
                now = max(seg.pos, seg.arrived)
                if now - mark < STALL_BYTES:
                    raise Transient(
                        f"less than {STALL_BYTES >> 10} KiB arrived in {self.stall_seconds:g} s"
                    )
                mark = now
        finally:
            task.cancel()  # a no-op once done; gather also retrieves a failure nobody awaited
            await asyncio.gather(task, return_exceptions=True)

    async def _attempt_range(
        self,
        client: httpx.AsyncClient | None,
        writer: PartWriter,
        seg: Segment,
        resp: Response | None,
        pos: int,
    ) -> tuple[int, Transient | None]:
        """Open (unless `resp` is given), check that the answer continues our bytes, copy them."""
        if resp is None:
            resp = await self._send(client, pos, seg.end, writer.state)
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
            if isinstance(resp, WireResponse):
                return await self._pump(resp, writer, seg, pos, limit)
            return await self._stream(resp, writer, seg, pos, limit)
        finally:
            await resp.aclose()

    def _cap(self, pos: int) -> int:
        """The last offset a body of unknown size may reach: `max_bytes`, or the disk's reserve.

        Free space is shared with the other downloads to this disk (their promised bytes are
        taken off), and `reserve_bytes` always stay free.
        """
        room = common.disk_free(self.dest) - self.reserve_bytes - LEDGER.promised(self.dest)
        self._allowed = min(self.max_bytes, pos + max(0, room))
        return self._allowed

    def _check_cap(self, pos: int) -> None:
        """Raise when a body of unknown size ran past its cap (the caller deletes the `.part`)."""
        if pos <= self._allowed:
            return
        if self._allowed >= self.max_bytes:
            raise BodyTooLarge(
                f"{self.where} sent more than {human(self.max_bytes)} without stating a size, "
                "the limit for such downloads (max_download_bytes); the partial file was "
                "deleted. Raise max_download_bytes if the file really is that large."
            )
        raise InsufficientStorage(
            f"The disk holding {self.dest} is nearly full: {self.filename} (of unstated size) "
            f"stopped at {human(pos - 1)} to keep {human(self.reserve_bytes)} free "
            "(download_reserve_bytes); the partial file was deleted. Free some space and pull "
            "again."
        )

    async def _pump(
        self, resp: WireResponse, writer: PartWriter, seg: Segment, pos: int, limit: int
    ) -> tuple[int, Transient | None]:
        """Fast path: copy the body on a worker thread (see `pump.py`)."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        stopper = Stopper(resp.conn)
        ticker = Ticker(loop, lambda: self._tick(writer))
        try:
            return await run_blocking(
                self._pool, stopper, pump, resp, writer, seg, pos, stopper, self._check_head,
                ticker, limit,
            )  # fmt: skip
        finally:
            self._tick(writer)

    def _tick(self, writer: PartWriter) -> None:
        """On the loop, ~10 times a second: report progress; save the sidecar every second."""
        self.received = max(self.received, writer.state.done)
        self._report()
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            self._last_save = now
            with contextlib.suppress(OSError):  # a full disk: the writes report it
                save_state(self.sidecar, writer.state)

    def _check_head(self, head: bytes) -> None:
        """The first bytes of the file must be the GGUF magic (unless `require_gguf` is off)."""
        if self.require_gguf and head[:4] != GGUF_MAGIC[: len(head[:4])]:
            raise InvalidModelFile(
                f"{self.where} is not a GGUF model file (it does not start with the GGUF "
                "magic); the partial file was deleted. Check that the URL points at a .gguf "
                "file and not at a web page.",
                param="url",
            )

    async def _stream(
        self, resp: httpx.Response, writer: PartWriter, seg: Segment, pos: int, limit: int
    ) -> tuple[int, Transient | None]:
        """httpx path: copy the body in ~1 MiB batches, up to `limit`; returns (offset, error)."""
        batch: list[bytes] = []
        batch_at, batch_len = pos, 0
        error: Transient | None = None
        try:
            async for chunk in resp.aiter_raw():
                if pos + len(chunk) > limit:
                    chunk = chunk[: limit - pos]
                batch.append(chunk)
                batch_len += len(chunk)
                pos += len(chunk)
                seg.arrived = pos
                self.received += len(chunk)
                if batch_len >= BATCH_BYTES:
                    await self._write(writer, seg, batch_at, batch)
                    batch, batch_at, batch_len = [], pos, 0
                self._report()
                if pos >= limit:
                    break
        except httpx.TransportError as exc:
            error = Transient(f"{type(exc).__name__} after {pos} bytes")
        finally:
            if batch:
                await self._write(writer, seg, batch_at, batch)
        return pos, error

    async def _write(self, writer: PartWriter, seg: Segment, at: int, batch: list[bytes]) -> None:
        if at == 0:
            self._check_head(b"".join(batch)[:4])
        await writer.write(seg, at, batch)
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            self._last_save = now
            with contextlib.suppress(OSError):  # a full disk: the writes report it
                save_state(self.sidecar, writer.state)
