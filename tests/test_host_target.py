"""One host per request, and pages no other site can frame.

Raw sockets against real servers (uvicorn with Hearth's protocol, as `hearth serve` runs it, and
uvicorn's h11 protocol, as a program embedding Hearth's app might): two Host headers, or an
absolute-form target (`GET http://evil.example/v1/models HTTP/1.1`) naming another host than
the Host header, are a 400 that says what to send; a target naming this very server is served
(HTTP/1.1 servers must accept the absolute form). Pages a browser renders carry
`X-Frame-Options: DENY` beside the CSP's `frame-ancestors 'none'`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from support.server import HearthProcess, ThreadedServer

from hearth.server.app import create_app
from hearth.services import Services


def exchange(port: int, head: str) -> tuple[int, dict[str, Any]]:
    """Send one request head on a fresh connection; the status and the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    return int(header_block.split()[1]), json.loads(body)


def head(target: str, *hosts: str) -> str:
    return "".join(
        [f"GET {target} HTTP/1.1\n", *(f"Host: {h}\n" for h in hosts), "Connection: close\n"]
    )


def heads(port: int) -> dict[str, str]:
    """Requests whose host is ambiguous, by what is wrong with them."""
    me = f"127.0.0.1:{port}"
    return {
        "two hosts, evil last": head("/v1/models", me, "evil.example"),
        "two hosts, evil first": head("/v1/models", "evil.example", me),
        "two equal hosts": head("/v1/models", me, me),
        "target names evil": head("http://evil.example/v1/models", me),
        "target on another port": head("http://127.0.0.1:1/v1/models", me),
        "target with a user": head(f"http://u@{me}/v1/models", me),
    }


def check_hosts(port: int) -> None:
    for what, request in heads(port).items():
        status, body = exchange(port, request)
        assert status == 400, (what, body)
        assert body["error"]["code"] == "invalid_host", what
        message = body["error"]["message"]
        assert "Host header" in message, what
        if what.startswith("target"):
            assert "Send the path alone" in message, what
        else:
            assert "Host headers; send exactly one" in message, what
    # The absolute form naming this very server is ordinary HTTP/1.1: served.
    me = f"127.0.0.1:{port}"
    for target in (f"http://{me}/v1/models", "/v1/models"):
        status, body = exchange(port, head(target, me))
        assert status == 200 and body["object"] == "list", target


@pytest.mark.slow
def test_an_ambiguous_host_is_a_400_under_hearth_serve(home: Path) -> None:
    with HearthProcess(home) as proc:
        check_hosts(proc.port)


def test_an_ambiguous_host_is_a_400_in_the_test_server(server: ThreadedServer) -> None:
    check_hosts(server.port)


@pytest.fixture
def h11_port(services: Services) -> Iterator[int]:
    """The app under uvicorn's h11 protocol (which keeps the whole target in raw_path)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(services), http="h11", log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_an_absolute_target_naming_another_host_is_a_400_under_h11(h11_port: int) -> None:
    request = head("http://evil.example/v1/models", f"127.0.0.1:{h11_port}")
    status, body = exchange(h11_port, request)
    assert status == 400 and "'evil.example'" in body["error"]["message"]


def test_pages_cannot_be_framed(server: ThreadedServer) -> None:
    html = {"Accept": "text/html"}
    with server.http() as http:
        page = http.get("/", headers=html)
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        again = http.get("/", headers={**html, "If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.headers["x-frame-options"] == "DENY"
        script = http.get("/static/web/bundle/main.js")
        assert script.headers["x-frame-options"] == "DENY"
        for path in ("/docs", "/docs/oauth2-redirect"):
            docs = http.get(path)
            assert docs.status_code == 200 and docs.headers["x-frame-options"] == "DENY", path
            assert docs.headers["content-security-policy"] == "frame-ancestors 'none'", path
        # The API's answers are not pages: they go out as the routes (and engines) wrote them.
        assert "x-frame-options" not in http.get("/v1/models").headers
    assert httpx.get(f"{server.url}/health").status_code == 200
