"""Fetching the ranges of one download: open with retries, then copy the body into the `.part`.

Split from `transfer.py` (which plans, resumes, verifies and publishes) to keep both readable.
Each range runs `_fetch`: open (fast path: `wire.open_wire` on a worker thread; else httpx),
check that a 206 continues the same file, copy the body, and on a transient failure back off
and ask again for the bytes still missing.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from hearth.downloads.common import (
    Backoff,
    ProgressCallback,
    Restart,
    Transient,
    Unsatisfiable,
)
from hearth.downloads.pump import Ticker, pump, run_blocking
from hearth.downloads.request import check_same_file, open_range, range_headers
from hearth.downloads.state import PartState, PartWriter, Segment, save_state
from hearth.downloads.wire import Stopper, WireResponse, open_wire
from hearth.errors import InvalidModelFile

GGUF_MAGIC = b"GGUF"
BATCH_BYTES = 1 << 20
Response = httpx.Response | WireResponse


class RangeFetcher:
    """The per-range half of `transfer._Transfer` (a dataclass that provides these fields)."""

    url: str
    filename: str
    headers: dict[str, str]
    progress: ProgressCallback | None
    require_gguf: bool
    backoff: tuple[int, float, float]
    timeout: float
    received: int
    total: int | None
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
        if client is not None:
            return await open_range(client, self.url, self.headers, start, end, st)
        assert self._pool is not None
        headers = range_headers(self.headers, start, end, st)
        stopper = Stopper()
        return await run_blocking(
            self._pool, stopper, open_wire, self.url, headers, self.timeout, stopper
        )

    async def _fetch(
        self,
        client: httpx.AsyncClient | None,
        writer: PartWriter,
        seg: Segment,
        resp: Response | None,
    ) -> None:
        """Fetch the rest of one range, retrying from the last received byte on transient errors."""
        backoff = Backoff(*self.backoff)
        pos = seg.pos
        while seg.end is None or pos < seg.end:
            if resp is None:
                try:
                    resp = await self._open(client, pos, seg.end, writer.state)
                except Transient as exc:
                    await backoff.wait(exc, f"{self.filename} at byte {pos}")
                    continue
            start = pos
            try:
                if resp.status_code == 206:
                    check_same_file(resp, pos, writer.state)
                elif pos != 0:
                    raise Restart("The server sent the whole file instead of the missing part")
                if isinstance(resp, WireResponse):
                    pos, error = await self._pump(resp, writer, seg, pos)
                else:
                    pos, error = await self._stream(resp, writer, seg, pos)
            finally:
                await resp.aclose()
                resp = None
            if error is None and seg.end is None:
                seg.end = writer.state.total = self.total = pos
                await writer.flush()
                return
            if error is None and pos < seg.end:  # type: ignore[operator]
                error = Transient(f"connection closed after {pos - start} bytes")
            if error is not None:
                if pos > start:
                    backoff.attempt = 0
                await backoff.wait(error, f"{self.filename} at byte {pos}")

    async def _pump(
        self, resp: WireResponse, writer: PartWriter, seg: Segment, pos: int
    ) -> tuple[int, Transient | None]:
        """Fast path: copy the body on a worker thread (see `pump.py`)."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        stopper = Stopper(resp.conn)
        ticker = Ticker(loop, lambda: self._tick(writer))
        try:
            return await run_blocking(
                self._pool, stopper, pump, resp, writer, seg, pos, stopper, self._check_head, ticker
            )
        finally:
            self._tick(writer)

    def _tick(self, writer: PartWriter) -> None:
        """On the loop, ~10 times a second: report progress; save the sidecar every second."""
        self.received = max(self.received, writer.state.done)
        self._report()
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            self._last_save = now
            save_state(self.sidecar, writer.state)

    def _check_head(self, head: bytes) -> None:
        """The first bytes of the file must be the GGUF magic (unless `require_gguf` is off)."""
        if self.require_gguf and head[:4] != GGUF_MAGIC[: len(head[:4])]:
            raise InvalidModelFile(
                f"{self.where} is not a GGUF model file (it starts with {head[:4]!r}, not "
                "b'GGUF'); the partial file was deleted. Check that the URL points at a "
                ".gguf file and not at a web page.",
                param="url",
            )

    async def _stream(
        self, resp: httpx.Response, writer: PartWriter, seg: Segment, pos: int
    ) -> tuple[int, Transient | None]:
        """httpx path: copy the body in ~1 MiB batches; returns (next offset, error)."""
        batch: list[bytes] = []
        batch_at, batch_len = pos, 0
        error: Transient | None = None
        try:
            async for chunk in resp.aiter_raw():
                if seg.end is not None and pos + len(chunk) > seg.end:
                    chunk = chunk[: seg.end - pos]
                batch.append(chunk)
                batch_len += len(chunk)
                pos += len(chunk)
                self.received += len(chunk)
                if batch_len >= BATCH_BYTES:
                    await self._write(writer, seg, batch_at, batch)
                    batch, batch_at, batch_len = [], pos, 0
                self._report()
                if seg.end is not None and pos >= seg.end:
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
            save_state(self.sidecar, writer.state)
