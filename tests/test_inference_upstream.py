"""The lean HTTP/1.1 client Hearth uses to reach local engines (engines/upstream.py).

Parsing is pure logic, so it is fed arbitrary byte splits directly (property tests); the
connection handling (keep-alive reuse, a pooled connection the server closed, closing early)
runs against a real asyncio server on a loopback port.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.engines.upstream import EngineClient, UpstreamClosed, _Connection

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Transport:
    """Just enough transport for a parser fed by hand."""

    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None:
        self.aborted = True


def chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return body + b"0\r\n" + trailer + b"\r\n"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


async def feed(head: bytes, body: bytes, cuts: list[int], *, close: bool = False) -> bytes:
    loop = asyncio.get_running_loop()
    conn = _Connection()
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    head_ready = conn.request(b"POST / HTTP/1.1\r\n\r\n")
    for segment in split(head + body, cuts):
        loop.call_soon(conn.data_received, segment)
    if close:
        loop.call_soon(conn.connection_lost, None)
    await head_ready
    out = b""
    while (data := await conn.next_body()) is not None:
        out += data
    assert conn.status == 200
    return out


PAYLOADS = st.lists(st.binary(max_size=300), max_size=8)
CUTS = st.lists(st.integers(min_value=0, max_value=4000), max_size=30)


@settings(max_examples=150, deadline=None)
@given(pieces=PAYLOADS, cuts=CUTS)
@pytest.mark.slow
def test_chunked_bodies_survive_any_split(pieces: list[bytes], cuts: list[int]) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailer = b"X-Trailer: 1\r\n" if len(pieces) % 2 else b""
    body = asyncio.run(feed(head, chunked(pieces, trailer), cuts))
    assert body == b"".join(pieces)


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=2000), cuts=CUTS)
@pytest.mark.slow
def test_content_length_and_until_close_bodies(payload: bytes, cuts: list[int]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload)
    assert asyncio.run(feed(head, payload, cuts)) == payload
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    assert asyncio.run(feed(head, payload, cuts, close=True)) == payload


async def test_a_malformed_or_cut_response_is_an_upstream_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(UpstreamClosed, match="malformed"):
        await feed(head, b"zz\r\nhello\r\n", [])
    with pytest.raises(UpstreamClosed, match="mid-response"):
        await feed(head, b"5\r\nhel", [], close=True)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int, list[int]]:
    """A real server; the list counts the connections it accepted."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def test_keep_alive_reuse_and_a_stale_pooled_connection() -> None:
    async def twice_then_hang_up(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for _ in range(2):
            body = await read_request(reader)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await w.drain()
        # then hang up, as an idle keep-alive connection eventually is

    server, port, accepted = await serve(twice_then_hang_up)
    client = EngineClient()
    async with server:
        for n in range(3):
            response = await client.post("127.0.0.1", port, "/x", b"ping%d" % n, {})
            assert await response.aread() == b"ping%d" % n
            await response.aclose()
    client.close()
    # requests 1 and 2 shared a connection; 3 found it closed (or hung up on) and used a fresh one
    assert len(accepted) == 2


async def test_closing_early_hangs_up_so_the_engine_can_cancel() -> None:
    hung_up = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"6\r\ndata: \r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            hung_up.set()

    server, port, _ = await serve(endless)
    client = EngineClient()
    async with server:
        response = await client.post("127.0.0.1", port, "/stream", b"{}", {})
        stream = response.aiter_bytes()
        assert (await stream.__anext__()).startswith(b"data: ")
        await response.aclose()
        await asyncio.wait_for(hung_up.wait(), 30)
    client.close()


async def test_a_refused_connection_raises_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nobody listens on it
    with pytest.raises(ConnectionError):
        await EngineClient().post("127.0.0.1", port, "/x", b"{}", {})


async def test_streamed_responses_do_not_keep_their_connection() -> None:
    """llama.cpp closes the connection after a streamed answer, so it is never pooled."""

    async def stream_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keeps it open: only the client may decide not to reuse it

    server, port, accepted = await serve(stream_once)
    client = EngineClient()
    async with server:
        for _ in range(2):
            response = await client.post("127.0.0.1", port, "/s", b"{}", {})
            assert await response.aread() == b"ok"
            await response.aclose()
    client.close()
    assert len(accepted) == 2


async def test_the_engine_key_goes_in_the_head_of_every_request() -> None:
    """The per-launch key rides as one ready-made header line, built once per engine process
    (`auth_head`), which the local target hands the client as it is."""
    heads: list[bytes] = []

    async def echo_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            heads.append(head)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    auth = b"Authorization: Bearer k3y\r\n"
    server, port, _ = await serve(echo_head)
    client = EngineClient()
    async with server:
        for _ in range(2):  # a fresh and a reused connection
            response = await client.post("127.0.0.1", port, "/v1/x", b"{}", {"a": "1"}, auth)
            assert await response.aread() == b"ok"
            await response.aclose()
    client.close()
    assert len(heads) == 2
    for head in heads:
        assert head.startswith(b"POST /v1/x HTTP/1.1\r\n")
        assert head.endswith(b"a: 1\r\nAuthorization: Bearer k3y\r\n\r\n")
