"""API key, Host allow-list (DNS rebinding) and CORS, on a real server."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services


def serve_with(home: Path, **flags: object) -> ThreadedServer:
    return ThreadedServer(Services.create(load_settings(home=home, flags=flags, env={})))


def test_api_key_guards_every_v1_route(home: Path) -> None:
    with serve_with(home, api_key="s3cret") as srv:
        with srv.http() as http:
            assert http.get("/health").status_code == 200
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = http.get("/v1/models", headers=headers)
                assert r.status_code == 401
                assert r.json()["error"]["code"] == "invalid_api_key"
            assert (
                http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code
                == 200
            )
        assert srv.openai(api_key="s3cret").models.list().data == []
        with pytest.raises(openai.AuthenticationError):
            srv.openai(api_key="nope").models.list()


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:1337", "127.0.0.1.evil.example", "10.0.0.5"]
)
def test_foreign_host_headers_are_rejected(home: Path, host: str) -> None:
    with serve_with(home) as srv, srv.http() as http:
        r = http.get("/v1/models", headers={"Host": host})
        assert r.status_code == 403
        assert "allowed_hosts" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:1337", "127.0.0.1:9", "[::1]:1337", "127.1.2.3"]
)
def test_loopback_host_headers_are_accepted(home: Path, host: str) -> None:
    with serve_with(home) as srv, srv.http() as http:
        assert http.get("/v1/models", headers={"Host": host}).status_code == 200


def test_configured_host_is_accepted(home: Path) -> None:
    with serve_with(home, allowed_hosts=["box.lan"]) as srv, srv.http() as http:
        assert http.get("/v1/models", headers={"Host": "box.lan:1337"}).status_code == 200


def test_cors_is_an_explicit_allow_list(home: Path) -> None:
    with serve_with(home, cors_origins=["http://app.local"]) as srv, srv.http() as http:
        pre = {"Access-Control-Request-Method": "GET"}
        ok = http.options("/v1/models", headers={"Origin": "http://app.local", **pre})
        assert ok.headers.get("access-control-allow-origin") == "http://app.local"
        bad = http.get("/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
    with serve_with(home) as srv, srv.http() as http:
        r = http.get("/v1/models", headers={"Origin": "http://app.local"})
        assert "access-control-allow-origin" not in r.headers
