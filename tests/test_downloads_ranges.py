"""The range fetcher on its own: built from an explicit `RangeContext`, over either transport,
and the one place that picks the transport (`open_transport`). Real loopback servers, no fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.core.errors import InvalidModelFile
from hearth.downloads.ranges import Progress, RangeContext, RangeFetcher
from hearth.downloads.state import PartState, PartWriter
from hearth.downloads.transport import (
    HttpxTransport,
    Transport,
    WireTransport,
    open_transport,
)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def context(url: str, dest: Path, transport: Transport, counts: Progress) -> RangeContext:
    return RangeContext(
        url=url,
        where=url,
        dest=dest,
        filename="m.gguf",
        sidecar=dest / "m.gguf.part.json",
        headers={},
        require_gguf=True,
        backoff=(2, 0.001, 0.01),
        stall_seconds=10.0,
        reserve_bytes=0,
        max_bytes=1 << 30,
        transport=transport,
        progress=counts,
    )


async def fetch_two_ranges(url: str, dest: Path, client: httpx.AsyncClient | None) -> str:
    """Fetch [0, half) and [half, size) with one fetcher; the sha256 of what landed."""
    reports: list[tuple[int, int | None]] = []
    counts = Progress(lambda done, total: reports.append((done, total)))
    size = len(gguf_bytes(300_000, 7))
    state = PartState.fresh(url, None, None, size, 2)
    with ThreadPoolExecutor(3) as pool:
        async with open_transport(
            client, pool, connections=2, timeout=10, allow_private=False
        ) as transport:
            fetcher = RangeFetcher(context(url, dest, transport, counts))
            writer = PartWriter(dest / "m.gguf.part", state)
            try:
                writer.truncate(size)
                await asyncio.gather(*(fetcher.fetch(writer, s, None) for s in state.segments))
                digest = await writer.digest()
            finally:
                await writer.aclose()
    assert state.complete and counts.received >= size // 2
    return digest


@pytest.mark.parametrize("transport", ["wire", "httpx"])
def test_a_fetcher_built_from_its_context_fetches_ranges(
    server: FaultServer, tmp_path: Path, transport: str
) -> None:
    data = gguf_bytes(300_000, 7)
    url = server.add("/m.gguf", data)

    async def run() -> str:
        if transport == "wire":
            return await fetch_two_ranges(url, tmp_path, None)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            return await fetch_two_ranges(url, tmp_path, client)

    assert asyncio.run(asyncio.wait_for(run(), 60)) == sha256(data)
    assert sorted(r.range or "" for r in server.requests_for("/m.gguf")) == [
        "bytes=0-149999",
        "bytes=150000-299999",
    ]


def test_the_context_is_what_the_fetcher_checks_against(
    server: FaultServer, tmp_path: Path
) -> None:
    """`require_gguf` comes from the context: a page that is no GGUF is refused."""
    url = server.add("/m.gguf", b"<html>" + b"x" * 1000)

    async def run() -> None:
        state = PartState.fresh(url, None, None, 1006, 1)
        with ThreadPoolExecutor(2) as pool:
            transport = WireTransport(pool, 10, False)
            fetcher = RangeFetcher(context(url, tmp_path, transport, Progress(None)))
            writer = PartWriter(tmp_path / "m.gguf.part", state)
            try:
                await fetcher.fetch(writer, state.segments[0], None)
            finally:
                await writer.aclose()

    with pytest.raises(InvalidModelFile, match="not a GGUF"):
        asyncio.run(asyncio.wait_for(run(), 60))


def test_the_transport_is_chosen_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client and no proxy: wire. A client: that client. A proxy in the environment: an own
    httpx client (only httpx honours proxies)."""
    for name in ("http", "https", "all"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)

    async def pick(client: httpx.AsyncClient | None) -> Transport:
        with ThreadPoolExecutor(1) as pool:
            async with open_transport(
                client, pool, connections=1, timeout=1, allow_private=False
            ) as chosen:
                return chosen

    async def run() -> None:
        assert isinstance(await pick(None), WireTransport)
        async with httpx.AsyncClient(trust_env=False) as client:
            chosen = await pick(client)
            assert isinstance(chosen, HttpxTransport) and chosen.client is client
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        own = await pick(None)
        assert isinstance(own, HttpxTransport) and own.client.is_closed  # closed after use

    asyncio.run(run())
