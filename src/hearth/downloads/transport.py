"""How a download's bytes travel: one `Transport`, chosen once per download by `open_transport`.

Two transports share everything but the socket. The wire transport (`wire.py` + `pump.py`:
stdlib http.client on worker threads, for http and https) is the fast one; the httpx transport
serves callers that pass their own client and every download while a proxy is configured in the
environment (only httpx honours proxies). Both follow redirects by `redirects.py`, classify
statuses by `request.status_error` and report to the range fetcher through a `Sink`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any, Protocol

import httpx

from hearth.downloads.common import Transient
from hearth.downloads.pump import Ticker, pump, run_blocking
from hearth.downloads.request import open_range, range_headers
from hearth.downloads.state import PartState, PartWriter, Segment
from hearth.downloads.wire import Stopper, WireResponse, open_wire, proxies_configured

BATCH_BYTES = 1 << 20


class Reply(Protocol):
    """A 200/206 answer whose body is still to be read (httpx's or `wire.WireResponse`)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...  # case-insensitive `.get`

    async def aclose(self) -> None: ...


class Sink(Protocol):
    """What a transport's copy tells the range fetcher."""

    def check_head(self, head: bytes) -> None:
        """The first bytes of the file (the GGUF magic check); raises to refuse them."""

    def arrived(self, count: int) -> None:
        """`count` more bytes came in (on the loop; progress is rate-limited by the sink)."""

    def tick(self, writer: PartWriter) -> None:
        """On the loop, ~10 times a second while a worker thread copies: catch up progress."""

    def save_soon(self, writer: PartWriter) -> None:
        """Save the sidecar if the last save is a second old."""


class Transport(Protocol):
    """Opens a range of one URL and copies its body into the `.part`."""

    async def open(
        self,
        url: str,
        headers: dict[str, str],
        start: int | None,
        end: int | None,
        state: PartState | None,
    ) -> Reply:
        """GET bytes [start, end) (all for None), redirects followed; a 200/206 or a raise."""
        ...

    async def copy(
        self, resp: Reply, writer: PartWriter, seg: Segment, pos: int, limit: int, sink: Sink
    ) -> tuple[int, Transient | None]:
        """Copy the body from offset `pos` up to `limit`; returns (next offset, error)."""
        ...


@contextlib.asynccontextmanager
async def open_transport(
    client: httpx.AsyncClient | None,
    pool: Executor,
    *,
    connections: int,
    timeout: float,
    allow_private: bool,
) -> AsyncIterator[Transport]:
    """The one place a download's transport is chosen: the caller's httpx client, else an own
    httpx client while a proxy is configured, else the wire transport on `pool`'s threads."""
    if client is not None:
        yield HttpxTransport(client, allow_private)
    elif not proxies_configured():
        yield WireTransport(pool, timeout, allow_private)
    else:
        limits = httpx.Limits(max_connections=connections + 2)
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as own:
            yield HttpxTransport(own, allow_private)


class WireTransport:
    """The fast path: blocking http.client requests and body copies on worker threads."""

    def __init__(self, pool: Executor, timeout: float, allow_private: bool) -> None:
        self.pool, self.timeout, self.allow_private = pool, timeout, allow_private

    async def open(
        self,
        url: str,
        headers: dict[str, str],
        start: int | None,
        end: int | None,
        state: PartState | None,
    ) -> Reply:
        sent = range_headers(headers, start, end, state)
        stopper = Stopper()
        return await run_blocking(
            self.pool, stopper, open_wire, url, sent, self.timeout, stopper, self.allow_private,
            discard=WireResponse.close,
        )  # fmt: skip

    async def copy(
        self, resp: Reply, writer: PartWriter, seg: Segment, pos: int, limit: int, sink: Sink
    ) -> tuple[int, Transient | None]:
        """Copy the body on a worker thread (see `pump.py`)."""
        assert isinstance(resp, WireResponse)  # this transport opened it
        loop = asyncio.get_running_loop()
        stopper = Stopper(resp.conn)
        ticker = Ticker(loop, lambda: sink.tick(writer))
        try:
            return await run_blocking(
                self.pool, stopper, pump, resp, writer, seg, pos, stopper, sink.check_head,
                ticker, limit,
            )  # fmt: skip
        finally:
            sink.tick(writer)


class HttpxTransport:
    """Requests through an httpx client (proxies, or a client the caller passed in)."""

    def __init__(self, client: httpx.AsyncClient, allow_private: bool) -> None:
        self.client, self.allow_private = client, allow_private

    async def open(
        self,
        url: str,
        headers: dict[str, str],
        start: int | None,
        end: int | None,
        state: PartState | None,
    ) -> Reply:
        return await open_range(
            self.client, url, headers, start, end, state, allow_private=self.allow_private
        )

    async def copy(
        self, resp: Reply, writer: PartWriter, seg: Segment, pos: int, limit: int, sink: Sink
    ) -> tuple[int, Transient | None]:
        """Copy the body in ~1 MiB batches, up to `limit`; returns (offset, error)."""
        assert isinstance(resp, httpx.Response)  # this transport opened it
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
                if batch_len >= BATCH_BYTES:
                    await _write(writer, seg, batch_at, batch, sink)
                    batch, batch_at, batch_len = [], pos, 0
                sink.arrived(len(chunk))
                if pos >= limit:
                    break
        except httpx.TransportError as exc:
            error = Transient(f"{type(exc).__name__} after {pos} bytes")
        finally:
            if batch:
                await _write(writer, seg, batch_at, batch, sink)
        return pos, error


async def _write(writer: PartWriter, seg: Segment, at: int, batch: list[bytes], sink: Sink) -> None:
    if at == 0:
        sink.check_head(b"".join(batch)[:4])
    await writer.write(seg, at, batch)
    sink.save_soon(writer)
