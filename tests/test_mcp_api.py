"""`GET /v1/mcp/servers` and the MCP service (issue 26, points 1 and 3): the user's servers with
their state, tools and last error; a broken one beside a working one; the file re-read when it
changes; no server process left once Hearth stops; tool names as a model sees them."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mcp.types import Tool

from hearth.core.config import load_settings
from hearth.core.errors import InvalidRequest, Unavailable
from hearth.mcp.hosts import McpUnavailable
from hearth.services import Services
from hearth.services import mcp as mcp_service
from hearth.services.mcp import ServerPick, _offered
from tests.support.server import ThreadedServer
from tests.support.waiting import wait_for
from tests.test_mcp_hosts import TEST_SERVER, marked_processes, our_processes

BARRIER = str(Path(__file__).parent / "support" / "mcp_barrier.py")


def _write(services: Services, servers: dict[str, Any]) -> None:
    path = services.settings.state_dir / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))


def _tool(name: str) -> Tool:
    return Tool(name=name, description=f"{name} it", input_schema={"type": "object"})


def test_tools_keep_their_names_unless_two_servers_share_one() -> None:
    tools = {"a": [_tool("add"), _tool("now")], "b": [_tool("now"), _tool("echo")]}
    picks = [ServerPick("a"), ServerPick("b", frozenset({"now"}))]
    offered = _offered(tools, picks)
    assert sorted(offered) == ["a__now", "add", "b__now"]
    assert (offered["b__now"].server, offered["b__now"].tool) == ("b", "now")
    assert offered["add"].chat_tool()["function"]["name"] == "add"


@pytest.mark.slow
def test_servers_listed_with_tools_errors_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_service, "RECHECK", 0.0)
    services = Services.create(load_settings(home=tmp_path, env={}))
    _write(services, {
        "test": {"command": sys.executable, "args": [TEST_SERVER]},
        "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit('no luck')"]},
        "off": {"command": sys.executable, "args": [TEST_SERVER], "active": False},
        "bad": {"args": ["x"]},
    })  # fmt: skip
    with ThreadedServer(services) as server, server.http() as client:
        quiet = client.get("/v1/mcp/servers", params={"start": "false"}).json()
        assert {s["name"]: s["state"] for s in quiet["data"]} == {
            "test": "stopped", "broken": "stopped", "off": "inactive",
        }  # fmt: skip
        answer = client.get("/v1/mcp/servers").json()
        by_name = {s["name"]: s for s in answer["data"]}
        assert by_name["test"]["state"] == "running"
        assert "add" in [t["name"] for t in by_name["test"]["tools"]]
        assert by_name["broken"]["state"] == "failed" and by_name["broken"]["last_error"]
        assert by_name["off"]["tools"] is None
        assert [p["name"] for p in answer["problems"]] == ["bad"]
        assert "mcp.json" in answer["problems"][0]["source"]
        assert marked_processes()

        _write(services, {"other": {"command": sys.executable, "args": [TEST_SERVER]}})
        again = client.get("/v1/mcp/servers", params={"start": "false"}).json()
        assert [s["name"] for s in again["data"]] == ["other"]
        wait_for(lambda: not marked_processes(), timeout=20)  # the removed server was stopped
        client.get("/v1/mcp/servers")
        assert marked_processes()
    assert not marked_processes()  # Hearth's shutdown stopped every server


def test_nothing_starts_once_the_service_is_closed(tmp_path: Path) -> None:
    """After Hearth's shutdown stopped the servers, a late request (one that already held the
    hosts, or one that asks for them now) starts no server: nothing would stop it."""
    services = Services.create(load_settings(home=tmp_path, env={}))
    _write(services, {"test": {"command": sys.executable, "args": [TEST_SERVER]}})
    service = mcp_service.McpService(services.settings)

    async def scenario() -> None:
        held = await service.hosts()
        await service.aclose()
        with pytest.raises(McpUnavailable, match="Hearth is stopping"):
            await held.list_tools("test")
        with pytest.raises(Unavailable, match="Hearth is stopping"):
            await service.hosts()
        with pytest.raises(Unavailable, match="Hearth is stopping"):
            await service.toolset([ServerPick("test")])
        function = mcp_service.McpFunction("add", "test", "add", "", {"type": "object"})
        failed = await service.call(function, '{"a": 1, "b": 2}', "late")
        assert failed.is_error and "Hearth is stopping" in failed.text

    asyncio.run(scenario())
    assert not our_processes()


def test_a_request_naming_an_unknown_or_off_server_starts_none(tmp_path: Path) -> None:
    """The servers a request names start together, but only once every one of them is
    configured and on: a bad name fails before any program starts."""
    services = Services.create(load_settings(home=tmp_path, env={}))
    entry = {"command": sys.executable, "args": [TEST_SERVER]}
    _write(services, {"test": entry, "off": {**entry, "active": False}})
    service = mcp_service.McpService(services.settings)

    async def scenario() -> None:
        try:
            for bad, words in (("ghost", "no MCP server named 'ghost'"), ("off", "turned off")):
                with pytest.raises(InvalidRequest, match=words):
                    await service.toolset([ServerPick("test"), ServerPick(bad)])
                assert not our_processes()
        finally:
            await service.aclose()

    asyncio.run(scenario())


def _barrier(folder: Path, name: str) -> dict[str, Any]:
    """A server that answers only once both servers of its pair started (mcp_barrier.py)."""
    folder.mkdir(exist_ok=True)
    return {"command": sys.executable, "args": [BARRIER, str(folder), name, "2"]}


@pytest.mark.slow
def test_the_servers_a_request_names_start_together(tmp_path: Path) -> None:
    """Two servers that each wait for the other before they answer: started one after the
    other, the first would fail its connect timeout; together, both answer (the Responses
    checks and the service's toolset)."""
    services = Services.create(load_settings(home=tmp_path, env={}))
    _write(services, {
        "a": _barrier(tmp_path / "pair", "a"), "b": _barrier(tmp_path / "pair", "b"),
        "c": _barrier(tmp_path / "pair2", "c"), "d": _barrier(tmp_path / "pair2", "d"),
    })  # fmt: skip
    with ThreadedServer(services) as server, server.http() as client:
        tools = [
            {"type": "mcp", "server_label": "a", "require_approval": "never"},
            {"type": "mcp", "server_label": "b", "allowed_tools": ["nope"]},
        ]
        reply = client.post("/v1/responses", json={"model": "m", "input": "hi", "tools": tools})
        assert reply.status_code == 400, reply.text  # both listed: b has no such tool
        error = reply.json()["error"]
        assert error["param"] == "tools[1].allowed_tools"
        assert "MCP server 'b' has no tool 'nope'" in error["message"]
    service = mcp_service.McpService(services.settings)

    async def toolset() -> mcp_service.Toolset:
        try:
            return await service.toolset([ServerPick("c"), ServerPick("d")])
        finally:
            await service.aclose()

    assert {"c__add", "d__add"} <= set(asyncio.run(toolset()).functions)
    assert not our_processes()


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A remote MCP server that refuses every request: 401, as to a wrong key."""

    def do_GET(self) -> None:
        body = b"unauthorized"
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:  # not the test's business
        pass


@pytest.mark.slow
def test_a_secret_in_a_servers_url_or_headers_shows_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hosted MCP servers carry keys in their URL or headers, and an HTTP error names the
    whole URL: the server list, a 424 and the log (at any level) name the address, never
    show the key."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="hearth.mcp")
    refusing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{refusing.server_address[1]}"
    secret = "SECRET-k3y-0123456789"
    headers = {"Authorization": f"Bearer {secret}-h"}
    services = Services.create(load_settings(home=tmp_path, env={}))
    _write(services, {
        "remote": {"type": "sse", "url": f"{base}/sse?key={secret}", "headers": headers},
        "hosted": {"type": "http", "url": f"{base}/mcp/{secret}?key={secret}"},
    })  # fmt: skip
    try:
        with ThreadedServer(services) as server, server.http() as client:
            listed = client.get("/v1/mcp/servers")
            errors = {s["name"]: s["last_error"] for s in listed.json()["data"]}
            assert "401 Unauthorized' for url '<url of 'remote'>'" in errors["remote"]
            assert errors["hosted"]
            tools = [{"type": "mcp", "server_label": "remote"}]
            reply = client.post("/v1/responses", json={"model": "m", "input": "hi",
                                                       "tools": tools})  # fmt: skip
            assert reply.status_code == 424 and "<url of 'remote'>" in reply.text
    finally:
        refusing.shutdown()
        refusing.server_close()
    assert secret not in listed.text and secret not in reply.text
    assert secret not in caplog.text
    assert "mcp server remote failed" in caplog.text
    assert "<url of 'hosted'>" in caplog.text  # the SDK's own log line, cleaned
