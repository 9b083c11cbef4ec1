"""One redirect policy for both transports: the same hostile Location gets the same answer.

Every case runs a real `download_file` against a FaultServer on loopback twice: over the wire
transport (no client) and over the httpx transport (a client passed in). Before `redirects.py`
the two followed redirects with two codes, and a Location httpx cannot parse was retried as
network trouble on the httpx path while the wire path refused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.core.errors import InvalidRequest
from hearth.downloads import redirects
from hearth.downloads.common import DownloadFailed, DownloadResult
from hearth.downloads.transfer import download_file

FAST: dict[str, Any] = {"backoff": 0.001, "max_backoff": 0.01, "retries": 2}
TRANSPORTS = ["wire", "httpx"]


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def fetch(transport: str, url: str, dest: Path, **kwargs: Any) -> DownloadResult:
    async def run() -> DownloadResult:
        options = {**FAST, **kwargs}
        if transport == "wire":
            return await download_file(url, dest, "m.gguf", **options)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            return await download_file(url, dest, "m.gguf", client=client, **options)

    return asyncio.run(asyncio.wait_for(run(), 60))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "target", ["http://[::1", "javascript:alert(1)", "ftp://127.0.0.1/m.gguf", "data:,GGUF"]
)
def test_an_unusable_location_is_refused_at_once_on_both_transports(
    server: FaultServer, tmp_path: Path, transport: str, target: str
) -> None:
    url = server.add("/m.gguf", gguf_bytes(1000))
    server.fault("/m.gguf", redirect_to=target, times=None)
    with pytest.raises(InvalidRequest, match="Refused a redirect") as info:
        fetch(transport, url, tmp_path)
    assert info.value.code == "unsafe_redirect" and target not in info.value.message
    assert len(server.requests_for("/m.gguf")) == 1  # refused, not retried
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_redirect_loop_stops_after_the_same_number_of_hops(
    server: FaultServer, tmp_path: Path, transport: str
) -> None:
    url = server.add("/m.gguf", gguf_bytes(1000))
    server.fault("/m.gguf", redirect_to="/m.gguf", times=None)
    with pytest.raises(DownloadFailed, match="Too many redirects"):
        fetch(transport, url, tmp_path, retries=0)
    assert len(server.requests_for("/m.gguf")) == redirects.MAX_REDIRECTS + 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_authorization_stays_on_its_origin(tmp_path: Path, transport: str) -> None:
    """Same origin (a relative Location): kept. Another port is another origin: dropped."""
    data = gguf_bytes(5000, 3)
    with FaultServer() as first, FaultServer() as second:
        second.add("/real.gguf", data)
        first.add("/moved.gguf", b"")
        first.add("/m.gguf", b"")
        first.fault("/m.gguf", redirect_to="/moved.gguf")
        first.fault("/moved.gguf", redirect_to=second.url("/real.gguf"))
        token = {"Authorization": "Bearer secret"}
        result = fetch(transport, first.url("/m.gguf"), tmp_path, headers=token)
        assert result.sha256 == sha256(data)
        assert [r.authorization for r in first.requests_for("/m.gguf")] == ["Bearer secret"]
        assert [r.authorization for r in first.requests_for("/moved.gguf")] == ["Bearer secret"]
        assert {r.authorization for r in second.requests_for("/real.gguf")} == {None}


def test_the_policy_resolves_locations_like_httpx() -> None:
    base = httpx.URL("http://example.com/a/b.gguf")
    assert redirects.resolve(base, "c.gguf") == httpx.URL("http://example.com/a/c.gguf")
    assert redirects.resolve(base, "/x") == httpx.URL("http://example.com/x")
    assert redirects.resolve(base, "https:/y") == httpx.URL("https://example.com/y")
    assert redirects.resolve(base, "javascript:alert(1)") is None
    assert redirects.resolve(base, "http://[::1") is None
    assert redirects.location(302, {"location": "/x"}) == "/x"
    assert redirects.location(300, {"location": "/x"}) is None  # not a redirect to follow
