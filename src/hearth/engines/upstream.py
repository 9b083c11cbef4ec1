"""A lean HTTP/1.1 client for local engines: the proxy's hot path.

Why not httpx here: per streamed event, httpx (httpcore, h11, anyio) spent ~400 µs of CPU on a
small machine: each read re-arms epoll twice (pause/resume reading) and walks several layers of
generators and cancel scopes. That CPU is taken from the engine on a CPU-only box, and caps
throughput on a fast GPU. Local engines speak plain HTTP/1.1 on loopback, so this client reads
with an `asyncio.Protocol`, parses the response (Content-Length, chunked, or until close) as
bytes arrive, and wakes the consumer once per batch of body bytes. Remote engines (TLS, proxies,
compression) keep httpx.

Closing a response before its end closes the connection: that is what tells llama.cpp to
cancel the generation. A finished non-streamed response's connection goes back to a small
keep-alive pool (llama.cpp closes streamed ones itself).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import cast

_MAX_HEAD = 64 * 1024
_PAUSE_AT = 1 << 20  # buffered body bytes before we stop reading (a slow client)
_KEEP_IDLE = 4.0  # seconds; llama.cpp closes idle connections after 5


class UpstreamClosed(ConnectionError):
    """The engine closed the connection (or sent garbage) before the response ended.

    `stale` is true when a reused keep-alive connection failed before any byte of the answer:
    the request never reached the engine and is safe to send again.
    """

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the response currently being read from it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._state = "idle"  # idle -> head -> body -> trailer -> done
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._error: UpstreamClosed | None = None
        self._chunked = False
        self._left: int | None = None  # content-length left; chunked: size left, -1 size line
        self.got_bytes = False
        self.keep_alive = True
        self.status = 0
        self.headers: dict[str, str] = {}

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports (uvicorn's pick when installed) are not
        # asyncio.Transport subclasses, though they behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(UpstreamClosed(f"the engine sent a malformed HTTP response ({exc})"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == "body" and not self._chunked and self._left is None:
            self._finish()  # a body delimited by the connection's end
            return
        if self._state not in ("idle", "done"):
            stale = self.reused and not self.got_bytes
            self._fail(UpstreamClosed("the engine closed the connection mid-response", stale=stale))

    # -- request / response -----------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._state, self.got_bytes, self._error = "head", False, None
        self.status, self.headers, self._buffered = 0, {}, 0
        self._body.clear()
        self._head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._head

    def _parse(self) -> None:
        if self._state == "head":
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ValueError("response head too large")
                return
            self._read_head(bytes(self._buf[:end]))
            del self._buf[: end + 4]
        if self._state in ("body", "trailer"):
            self._read_body()

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers
        self.keep_alive = headers.get("connection", "").lower() != "close"
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left = -1 if self._chunked else int(length) if length is not None else None
        self._state = "body"
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._left == 0:
            self._finish()

    def _read_body(self) -> None:
        buf = self._buf
        if not self._chunked:
            n = len(buf) if self._left is None else min(len(buf), self._left)
            if n:
                self._push(bytes(buf[:n]))
                del buf[:n]
                if self._left is not None:
                    self._left -= n
            if self._left == 0:
                self._finish()
            return
        # chunked: _left > 0 is data still to come, 0 the CRLF after it, -1 the next size line
        pieces: list[bytes] = []
        while self._state != "done":
            left = self._left if self._left is not None else -1
            if self._state == "trailer":  # after the last chunk: optional trailers, blank line
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                del buf[: end + 2]
                if end == 0:
                    self._finish()
            elif left > 0:
                if not buf:
                    break
                n = min(left, len(buf))
                pieces.append(bytes(buf[:n]))
                del buf[:n]
                self._left = left - n
            elif left == 0:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
                del buf[:2]
                self._left = -1
            else:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self._state = "trailer"
                else:
                    self._left = size
        if pieces:
            self._push(b"".join(pieces))

    def _push(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._state = "done"
        self._wake()

    def _fail(self, error: UpstreamClosed) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: the caller may be gone
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_body(self) -> bytes | None:
        """The body bytes that arrived since the last call (joined), or None at the end."""
        while True:
            if self._body:
                data = b"".join(self._body) if len(self._body) > 1 else self._body[0]
                self._body.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self._state == "done":
                return None
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def reusable(self) -> bool:
        """Fully read, and kept open by the server. llama.cpp closes the connection after every
        streamed (chunked) response despite its Keep-Alive header, so those are not pooled:
        the next request would only find it dead and have to try again."""
        done = self._state == "done" and not self._chunked
        return done and self.keep_alive and not self.closed and not self._buf

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class EngineResponse:
    """One response, shaped like the parts of httpx.Response the proxy uses."""

    def __init__(self, client: EngineClient, key: tuple[str, int], conn: _Connection) -> None:
        self._client, self._key, self._conn = client, key, conn
        self.status_code = conn.status
        self.headers = conn.headers
        self._released = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while (data := await self._conn.next_body()) is not None:
            yield data

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Back to the pool when fully read; otherwise close, which cancels the generation."""
        if self._released:
            return
        self._released = True
        if self._conn.reusable:
            self._client._put(self._key, self._conn)
        else:
            self._conn.abort()


class EngineClient:
    """POSTs to local engines over pooled keep-alive connections."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < _KEEP_IDLE:
                conn.reused = True
                return conn
            conn.abort()
        return None

    def _put(self, key: tuple[str, int], conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        conn._state = "idle"
        self._idle.setdefault(key, []).append(conn)

    async def post(
        self,
        host: str,
        port: int,
        path: str,
        content: bytes,
        headers: dict[str, str],
        auth: bytes = b"",
    ) -> EngineResponse:
        """Send a POST and return once the response head is in (the body follows lazily).

        `auth` is a ready-made header line (`LlamaCppProcess.auth_head`, built once per engine
        process) so the per-launch key costs one concatenation per request, nothing per chunk.
        """
        key = (host, port)
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(content)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        data = head.encode("latin-1") + auth + b"\r\n" + content
        while True:
            conn = self._take(key)
            if conn is None:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_connection(_Connection, host, port)
            try:
                await conn.request(data)
            except UpstreamClosed as exc:
                if exc.stale:
                    continue  # a pooled connection the engine had closed: try a fresh one
                raise
            except BaseException:
                conn.abort()  # cancelled (client gone) or failed: closing tells the engine
                raise
            return EngineResponse(self, key, conn)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
