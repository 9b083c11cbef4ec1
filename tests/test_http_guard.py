"""The front door on a real server: body limits, hostile JSON, cross-site requests, the API key
on every route, strict Host parsing, 405's Allow, and /docs served without a CDN.

Over-limit bodies are sent on a raw socket: the headers and a small part, then the answer is
read. That the server answers 413 while most of the body was never sent is the proof that it
did not wait for (or buffer) the whole body.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_GGUF, make_model
from support.server import HearthProcess, ThreadedServer

from hearth.core.config import load_settings
from hearth.core.errors import HearthError
from hearth.models.ids import MAX_JAN_ID_LENGTH, is_any_id
from hearth.server.security import parse_host
from hearth.server.serve import check_bind_policy
from hearth.services import Services

MiB = 1024 * 1024
KEY = "k3y-0123456789abcdef"


def serve_with(home: Path, **flags: object) -> ThreadedServer:
    return ThreadedServer(Services.create(load_settings(home=home, flags=flags, env={})))


def raw_exchange(port: int, head: bytes, body_part: bytes = b"") -> tuple[int, dict[str, str], Any]:
    """Send `head` and `body_part` (maybe far less than the head announces), then read the
    answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + body_part)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def request_head(method: str, path: str, port: int, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(total: int, size: int = 64 * 1024) -> bytes:
    """A chunked body of exactly `total` bytes of JSON-ish filler, without the final 0-chunk."""
    out = b""
    while total > 0:
        n = min(size, total)
        out += f"{n:x}\r\n".encode() + b"[" * n + b"\r\n"
        total -= n
    return out


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- body limits -------------------------------------------------------------------------------


def test_a_100_mb_chat_body_gets_413_from_its_headers(server: ThreadedServer) -> None:
    head = request_head(
        "POST",
        "/v1/chat/completions",
        server.port,
        content_type="application/json",
        content_length=str(100 * MiB),
    )
    status, headers, body = raw_exchange(server.port, head, b'{"model": "m", "x": "' + b"a" * 65536)
    assert status == 413
    assert headers["connection"] == "close"
    assert body["error"]["code"] == "request_too_large"
    assert "max_body_bytes" in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_a_chunked_chat_body_is_refused_once_it_passes_the_cap(home: Path) -> None:
    with serve_with(home, max_body_bytes=MiB) as srv:
        head = request_head(
            "POST",
            "/v1/chat/completions",
            srv.port,
            content_type="application/json",
            transfer_encoding="chunked",
        )
        status, _, body = raw_exchange(srv.port, head, chunked(MiB + 1))
        assert status == 413 and body["error"]["code"] == "request_too_large"
        assert f"{MiB} bytes" in body["error"]["message"]
        with srv.http() as http:  # under the cap the same route still parses the body
            r = http.post("/v1/chat/completions", json={"messages": ["x" * (MiB // 2)]})
            assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_a_2_mib_patch_gets_413_and_writes_nothing(server: ThreadedServer, home: Path) -> None:
    folder = make_model(home, "m", {"description": "before"}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    head = request_head(
        "PATCH",
        "/v1/models/m",
        server.port,
        content_type="application/json",
        content_length=str(2 * MiB),
    )
    status, _, body = raw_exchange(server.port, head, b'{"description": "' + b"x" * 65536)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert "management" in body["error"]["message"]
    head = request_head(
        "PATCH",
        "/v1/models/m",
        server.port,
        content_type="application/json",
        transfer_encoding="chunked",
    )
    status, _, body = raw_exchange(server.port, head, chunked(MiB + 1))
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert (folder / "model.json").read_bytes() == before


# --- hostile JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_nesting_is_a_400_everywhere(server: ThreadedServer, home: Path, depth: int) -> None:
    folder = make_model(home, "m", {"description": "before"}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    deep = nested(depth)
    bodies = [
        ("POST", "/v1/chat/completions", f'{{"model": "m", "messages": {deep}}}'),
        ("PATCH", "/v1/models/m", f'{{"metadata": {{"x": {deep}}}}}'),
        ("POST", "/v1/models/m/start", f'{{"ctx_len": {deep}}}'),
    ]
    with server.http() as http:
        for method, path, text in bodies:
            r = http.request(
                method, path, content=text, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, (method, path, r.text)
            assert "nested more than 64 levels" in r.json()["error"]["message"]
        ok = http.patch("/v1/models/m", json={"metadata": {"x": json.loads(nested(60))}})
        assert ok.status_code == 200, ok.text
    assert (folder / "model.json").read_bytes() != before  # only the shallow one was written


@pytest.mark.parametrize("text", [b'"\\ud800"', b'"a\\uDFFFb"', b'"\xed\xa0\x80"'])
def test_lone_surrogates_are_a_400(server: ThreadedServer, home: Path, text: bytes) -> None:
    folder = make_model(home, "m", {"description": "before"}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    json_type = {"content-type": "application/json"}
    chat = b'{"model": "m", "messages": [{"role": "user", "content": ' + text + b"}]}"
    with server.http() as http:
        for method, path, body in [
            ("POST", "/v1/chat/completions", chat),
            ("PATCH", "/v1/models/m", b'{"description": ' + text + b"}"),
            ("PATCH", "/v1/models/m", b'{"metadata": {' + text + b": 1}}"),
        ]:
            r = http.request(method, path, content=body, headers=json_type)
            assert r.status_code == 400, (method, path, r.text)
            assert "lone UTF-16 surrogate" in r.json()["error"]["message"]
        assert (folder / "model.json").read_bytes() == before
        pair = http.patch(
            "/v1/models/m", content=b'{"description": "\\ud83d\\ude00"}', headers=json_type
        )
        assert pair.status_code == 200 and pair.json()["description"] == "\U0001f600"


def test_bodies_that_are_not_json_are_a_400(server: ThreadedServer, home: Path) -> None:
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    json_type = {"content-type": "application/json"}
    with server.http() as http:
        for path, method in [("/v1/chat/completions", "POST"), ("/v1/models/m", "PATCH")]:
            for raw in (b"\xff\xfe{", b"{oops", b'{"a": 1' + b"9" * 5000 + b"}"):
                r = http.request(method, path, content=raw, headers=json_type)
                assert r.status_code == 400, (path, raw[:10], r.text)
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}


# --- cross-site requests -----------------------------------------------------------------------


def test_cross_site_text_plain_posts_are_refused(server: ThreadedServer) -> None:
    body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "keep_alive": -1}'
    plain = {"content-type": "text/plain"}
    with server.http() as http:
        for extra in (
            {"origin": "http://evil.example"},
            {"origin": "null"},
            {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
            {"sec-fetch-site": "same-site"},
        ):
            r = http.post("/v1/chat/completions", content=body, headers={**plain, **extra})
            assert r.status_code == 403, extra
            assert r.json()["error"]["code"] == "cross_origin_refused"
            assert "cors_origins" in r.json()["error"]["message"]
        r = http.post("/v1/chat/completions", content=body, headers=plain)  # curl-like, no site
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        assert "application/json" in r.json()["error"]["message"]
        for form in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = http.patch("/v1/models/m", content="a=b", headers={"content-type": form})
            assert r.status_code == 415


def test_an_img_tag_cannot_start_a_download(server: ThreadedServer, home: Path) -> None:
    make_model(home, "c", {"sources": [{"filename": "c.gguf", "url": "https://e.x/c.gguf"}]})
    img = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
    with server.http() as http:
        r = http.get("/v1/models/download/c", headers=img)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_refused"
        link = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
        assert http.get("/v1/models/download/c", headers=link).status_code == 403
        assert http.get("/docs", headers=link).status_code == 200  # a link to the docs works
        old_browser = {"referer": "http://evil.example/page.html"}  # no Sec-Fetch-*, no Origin
        r = http.get("/v1/models/download/c", headers=old_browser)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_refused"
        own = {"referer": f"{server.url}/"}
        assert http.get("/v1/models", headers=own).status_code == 200
        assert http.get("/v1/downloads").json()["data"] == []


def test_allowed_and_same_origin_pages_still_work(home: Path) -> None:
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    with serve_with(home, cors_origins=["http://app.local"]) as srv, srv.http() as http:
        app = {"origin": "http://app.local", "sec-fetch-site": "cross-site"}
        r = http.get("/v1/models", headers=app)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.local"
        r = http.patch("/v1/models/m", json={"description": "from the app"}, headers=app)
        assert r.status_code == 200 and r.json()["description"] == "from the app"
        preflight = {
            "origin": "http://app.local",
            "access-control-request-method": "PATCH",
            "access-control-request-headers": "content-type, x-api-key",
        }
        ok = http.options("/v1/models/m", headers=preflight)
        assert ok.status_code == 200
        assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
        own = {"origin": srv.url, "sec-fetch-site": "same-origin"}
        assert http.patch("/v1/models/m", json={"name": "Own"}, headers=own).status_code == 200
        other_port = {"origin": "http://127.0.0.1:1", "sec-fetch-site": "same-site"}
        assert http.get("/v1/models", headers=other_port).status_code == 403


def test_posts_without_a_body_or_with_json_variants_pass(
    server: ThreadedServer, home: Path
) -> None:
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    with server.http() as http:
        stop = http.post("/v1/models/m/stop")  # no body, no content-type
        assert stop.status_code == 200 and stop.json()["stopped"] is False
        for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
            r = http.patch(
                "/v1/models/m",
                content=b'{"description": "d"}',
                headers={"content-type": content_type},
            )
            assert r.status_code == 200, (content_type, r.text)


# --- the API key -------------------------------------------------------------------------------


def test_the_api_key_covers_every_route_but_health_and_docs(home: Path) -> None:
    with serve_with(home, api_key=KEY) as srv, srv.http() as http:
        for path in ("/v1/models", "/v1/running", "/api/tags", "/", "/v1/nope", "/metrics"):
            r = http.get(path)
            assert r.status_code == 401, path
            error = r.json()["error"]
            if path.startswith("/api/"):  # Ollama's dialect: the message as a string
                assert "API key" in error, path
            else:
                assert error["code"] == "invalid_api_key"
        r = http.post("/v1/chat/completions", json={"model": "m"})
        assert r.status_code == 401
        assert http.get("/health").json() == {"status": "ok"}
        full = http.get("/health", headers={"authorization": f"Bearer {KEY}"}).json()
        assert full["service"] == "hearth" and full["home"] == str(home.resolve())
        wrong = {"authorization": "Bearer k3y-0123456789abcdeX"}
        assert http.get("/health", headers=wrong).json() == {"status": "ok"}
        assert http.get("/v1/models", headers=wrong).status_code == 401
        for path in ("/docs", "/openapi.json", "/static/swagger-ui/swagger-ui.css"):
            assert http.get(path).status_code == 200, path
        assert http.get("/v1/models", headers={"x-api-key": KEY}).status_code == 200
        tags = http.get("/api/tags", headers={"authorization": f"Bearer {KEY}"})
        assert tags.status_code == 200 and tags.json() == {"models": []}
        schema = http.get("/openapi.json").json()
        assert {"bearer", "x-api-key"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.slow
def test_a_short_key_is_refused_beyond_loopback(home: Path) -> None:
    proc = HearthProcess(home, "--host", "0.0.0.0", "--api-key", "only-15-chars!!").start(
        wait=False
    )
    assert proc.proc is not None
    out, _ = proc.proc.communicate(timeout=120)
    assert proc.proc.returncode != 0
    assert "at least 16" in out and "15" in out


@pytest.mark.parametrize(
    ("host", "key", "insecure", "ok"),
    [
        ("127.0.0.1", "short", False, True),  # loopback: only local processes can guess
        ("0.0.0.0", "x" * 16, False, True),
        ("0.0.0.0", "x" * 15, False, False),
        ("0.0.0.0", "x" * 15, True, False),  # --insecure allows no key, not a weak one
        ("0.0.0.0", None, True, True),
        ("0.0.0.0", None, False, False),
    ],
)
def test_bind_policy(home: Path, host: str, key: str | None, insecure: bool, ok: bool) -> None:
    settings = load_settings(
        home=home, flags={"host": host, "api_key": key, "insecure": insecure}, env={}
    )
    if ok:
        check_bind_policy(settings)
    else:
        with pytest.raises(HearthError):
            check_bind_policy(settings)


# --- Host, 404, 405 ----------------------------------------------------------------------------

BAD_HOSTS = [
    "localhost:evil.com",
    "localhost:",
    "localhost:99999",
    "localhost:123456",
    "127.0.0.1:1:2",
    "local host",
    "localhost :1337",
    "::1",
    "[::1",
    "[::1]:",
    "[evil]:80",
    "user@localhost",
    "localhost:+80",
    "localhost/x",
    "localhost.",
    "",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_malformed_host_headers_are_refused(home: Path, host: str) -> None:
    with serve_with(home) as srv:
        status, _, body = raw_exchange(
            srv.port, f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        )
    assert status == 403 and body["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:1337", "localhost"),
        ("127.0.0.1:65535", "127.0.0.1"),
        ("[::1]:1337", "[::1]"),
        ("[::1]", "[::1]"),
        ("box.lan", "box.lan"),
        ("localhost:65536", None),
        ("[not-ip]", None),
        ("a b", None),
    ],
)
def test_parse_host(value: str, name: str | None) -> None:
    assert parse_host(value) == name


def test_405_carries_allow_and_unknown_routes_are_plain_404s(
    server: ThreadedServer, home: Path
) -> None:
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    with server.http() as http:
        r = http.put("/v1/models")
        assert r.status_code == 405 and r.headers["allow"] == "GET"
        assert r.json()["error"]["code"] == "method_not_allowed"
        # Three routes share /v1/models/{id}; Allow names the methods of all of them.
        assert http.put("/v1/models/m").headers["allow"] == "GET, PATCH, DELETE"
        assert http.post("/static/swagger-ui/swagger-ui.css").headers["allow"] == "GET, HEAD"
        for path in ("/v1/nope", "/v1/downloads/x/y/z", "/v1/threadz"):
            r = http.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found", path
        # ids may nest (Jan's `author/model`): these name models, and none is here
        for path in ("/v1/models/m/nope", "/v1/models/m/start/x"):
            assert http.get(path).json()["error"]["code"] == "model_not_found", path
        # A bad id where a model route would be is a bad id; a path no id could route is a 404.
        assert http.post("/v1/models/.a%2Fb/start").json()["error"]["code"] == "invalid_model_id"
        assert http.get("/v1/models/a%2Fb/x").json()["error"]["code"] == "model_not_found"


# --- docs --------------------------------------------------------------------------------------


def test_docs_are_served_from_local_assets(server: ThreadedServer) -> None:
    with server.http() as http:
        page = http.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "https://" not in page.text and "http://" not in page.text
        for url in urls:
            asset = http.get(url)
            assert asset.status_code == 200 and len(asset.content) > 100, url
        js = http.get("/static/swagger-ui/swagger-ui-bundle.js")
        assert "javascript" in js.headers["content-type"] and b"SwaggerUIBundle" in js.content
        assert http.get("/docs/oauth2-redirect").status_code == 200
        assert http.get("/redoc").status_code == 404
        assert http.get("/static/swagger-ui/nope.js").json()["error"]["code"] == "not_found"


def test_openapi_states_the_model_id_pattern(server: ThreadedServer) -> None:
    with server.http() as http:
        schema = http.get("/openapi.json").json()
    seen = 0
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["name"] == "model_id":
                    seen += 1
                    assert param["required"] is True, path
                    pattern = re.compile(param["schema"]["pattern"])
                    assert param["schema"]["maxLength"] == MAX_JAN_ID_LENGTH
    assert seen >= 5
    for candidate in ("smollm2-135m", "A_b.c-1", ".hidden", "a/b", "a/../b", "", "x" * 129, "é"):
        assert bool(pattern.search(candidate)) == is_any_id(candidate), candidate


def test_backstops_answer_400_for_recursion_and_encoding_errors(services: Services) -> None:
    """Input that gets past the body checks by some other way still is a 400, not a 500."""
    srv = ThreadedServer(services)

    @srv.app.get("/v1/test-backstop/{kind}")
    async def backstop(kind: str) -> dict[str, str]:
        if kind == "deep":
            raise RecursionError("maximum recursion depth exceeded")
        return {"encoded": str("\ud800".encode())}

    with srv, srv.http() as http:
        deep = http.get("/v1/test-backstop/deep")
        assert deep.status_code == 400 and "nested" in deep.json()["error"]["message"]
        text = http.get("/v1/test-backstop/text")
        assert text.status_code == 400 and "surrogate" in text.json()["error"]["message"]
