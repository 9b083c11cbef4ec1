"""`GET /v1/mcp/servers` and the MCP service (issue 26, points 1 and 3): the user's servers with
their state, tools and last error; a broken one beside a working one; the file re-read when it
changes; no server process left once Hearth stops; tool names as a model sees them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.types import Tool

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.services import mcp as mcp_service
from hearth.services.mcp import ServerPick, _offered
from tests.support.server import ThreadedServer
from tests.support.waiting import wait_for
from tests.test_mcp_hosts import TEST_SERVER, marked_processes


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
