"""Where a token may go and where a redirect may lead: origin rules, then real redirects.

The end-to-end redirect tests give the httpx client a FaultServer on loopback as its HTTP proxy,
so a URL on a public address (93.184.216.34) is served locally without touching the internet, and
its redirect to 127.0.0.2 is what Hearth must refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from support.fault_server import FaultServer, gguf_bytes

from hearth.core.errors import InvalidRequest
from hearth.downloads.common import DownloadFailed, Transient
from hearth.downloads.request import MAX_RETRY_AFTER, open_range
from hearth.downloads.urls import check_redirect, hub_auth_headers, token_allowed

PUBLIC = "http://93.184.216.34"  # a literal public address: no DNS, never contacted


@pytest.mark.parametrize(
    ("url", "endpoint", "allowed"),
    [
        ("https://huggingface.co/a/b/resolve/c/m.gguf", None, True),
        ("https://HuggingFace.co:443/a/b/resolve/c/m.gguf", None, True),
        ("https://hf.co/a/b/resolve/c/m.gguf", None, True),
        ("http://huggingface.co/a/b/resolve/c/m.gguf", None, False),  # clear text
        ("https://huggingface.co:8443/a/m.gguf", None, False),  # another port
        ("https://cdn-lfs.huggingface.co/m.gguf", None, False),  # another host
        ("https://huggingface.co.evil.example/m.gguf", None, False),
        ("https://mirror.example:8443/a/m.gguf", "https://mirror.example:8443", True),
        ("https://mirror.example/a/m.gguf", "https://mirror.example:8443", False),
        ("http://mirror.example:8443/a/m.gguf", "https://mirror.example:8443", False),
        ("http://mirror.example/a/m.gguf", "http://mirror.example", False),  # http, public name
        ("http://127.0.0.1:9000/a/m.gguf", "http://127.0.0.1:9000", True),  # a local test Hub
        ("http://127.0.0.1:9001/a/m.gguf", "http://127.0.0.1:9000", False),
        ("http://localhost:9000/a/m.gguf", "http://localhost:9000", True),
        ("ftp://huggingface.co/m.gguf", None, False),
        ("not a url", "https://huggingface.co", False),
    ],
)
def test_token_goes_to_the_hub_origin_only(url: str, endpoint: str | None, allowed: bool) -> None:
    assert token_allowed(url, endpoint) is allowed
    expected = {"Authorization": "Bearer t"} if allowed else None
    assert hub_auth_headers(url, "t", endpoint) == expected
    assert hub_auth_headers(url, None, endpoint) is None


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2/x",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",
        "http://172.16.0.1/x",
        "http://0.0.0.0/x",
        "http://[fe80::1]/x",
        "http://[fd00::1]/x",
        "http://localhost/x",
        "http://a.localhost/x",
    ],
)
def test_public_to_internal_redirects_are_refused(target: str) -> None:
    with pytest.raises(InvalidRequest, match="loopback, link-local or private") as caught:
        check_redirect(f"{PUBLIC}/m.gguf", target)
    assert caught.value.code == "unsafe_redirect"
    check_redirect(f"{PUBLIC}/m.gguf", target, allow_private=True)  # the setting allows it
    check_redirect("http://127.0.0.1:9/m.gguf", target)  # it started inside already
    check_redirect("http://10.1.2.3/m.gguf", target)


@pytest.mark.parametrize(
    "target",
    ["javascript:alert(1)", "ftp://93.184.216.35/x", "file:///etc/passwd", "", "http:///x"],
)
def test_non_http_redirects_are_refused_even_when_private_is_allowed(target: str) -> None:
    with pytest.raises(InvalidRequest, match="other than an http") as caught:
        check_redirect(f"{PUBLIC}/m.gguf", target, allow_private=True)
    assert caught.value.code == "unsafe_redirect"
    assert "alert" not in caught.value.message and "passwd" not in caught.value.message


def test_public_to_public_redirects_pass() -> None:
    check_redirect(f"{PUBLIC}/m.gguf", "https://93.184.216.35:8443/m.gguf")
    check_redirect(f"{PUBLIC}/m.gguf", "http://[2606:2800:220:1::]/m.gguf")


@pytest.fixture
def proxy() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add("/m.gguf", gguf_bytes(5000, 1))
        yield srv


async def fetch(proxy: FaultServer, url: str, *, allow_private: bool = False) -> bytes:
    """The httpx path (request.open_range) through the loopback proxy; bounded by a timeout."""
    async with httpx.AsyncClient(proxy=proxy.base, timeout=10, trust_env=False) as client:
        resp = await open_range(client, url, {}, None, None, None, allow_private=allow_private)
        try:
            return await resp.aread()
        finally:
            await resp.aclose()


def test_a_redirect_from_a_public_url_to_127_0_0_2_is_refused(proxy: FaultServer) -> None:
    proxy.fault("/m.gguf", redirect_to="http://127.0.0.2/m.gguf")
    with pytest.raises(InvalidRequest, match="private address") as caught:
        asyncio.run(fetch(proxy, f"{PUBLIC}/m.gguf"))
    assert caught.value.code == "unsafe_redirect" and "127.0.0.2" not in caught.value.message
    assert [r.path for r in proxy.requests] == ["/m.gguf"]  # the inner address was never asked


def test_allow_private_follows_it(proxy: FaultServer) -> None:
    proxy.fault("/m.gguf", redirect_to="http://127.0.0.2/m.gguf")
    body = asyncio.run(fetch(proxy, f"{PUBLIC}/m.gguf", allow_private=True))
    assert body == gguf_bytes(5000, 1)
    assert len(proxy.requests_for("/m.gguf")) == 2


def test_a_javascript_location_is_a_clear_refusal(proxy: FaultServer) -> None:
    proxy.fault("/m.gguf", redirect_to="javascript:alert(document.cookie)")
    with pytest.raises(InvalidRequest, match="other than an http") as caught:
        asyncio.run(fetch(proxy, f"{PUBLIC}/m.gguf"))
    assert caught.value.code == "unsafe_redirect" and "cookie" not in caught.value.message


def test_loopback_urls_may_redirect_within_loopback(proxy: FaultServer) -> None:
    proxy.add("/moved.gguf", gguf_bytes(300, 2))
    proxy.fault("/m.gguf", redirect_to=proxy.url("/moved.gguf"))
    assert asyncio.run(fetch(proxy, proxy.url("/m.gguf"))) == gguf_bytes(300, 2)


EVIL_REASON = b"[link=https://evil.example]click[/link] \x1b]8;;https://evil.example\x1b\\x\x1b[31m"


async def fetch_raw(status_line: bytes, extra: bytes = b"") -> None:
    """open_range against a raw server that answers `status_line` with a hostile reason phrase."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\n" + extra + b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            url = f"http://127.0.0.1:{port}/m.gguf"
            await asyncio.wait_for(open_range(client, url, {}, None, None, None), 30)
    finally:
        server.close()


def test_a_reason_phrase_never_reaches_an_error_message() -> None:
    with pytest.raises(DownloadFailed, match=r"^404 Not Found for URL http://127") as caught:
        asyncio.run(fetch_raw(b"HTTP/1.1 404 " + EVIL_REASON))
    assert "evil" not in caught.value.message and "\x1b" not in caught.value.message
    with pytest.raises(Transient) as transient:
        asyncio.run(fetch_raw(b"HTTP/1.1 599 " + EVIL_REASON, b"Retry-After: 99999999\r\n"))
    assert str(transient.value) == "HTTP 599" and transient.value.retry_after == MAX_RETRY_AFTER
