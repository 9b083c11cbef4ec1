"""`hearth mcp ls|path|call` (issue 26): the user's MCP servers outside conversations.

The real command line (support.cli.CliRunner) on a home with the SDK-built test server, a server
that dies at start and an entry that cannot be read; with no Hearth server (the command starts
the servers itself and stops them) and with one (it asks `GET /v1/mcp/servers`, so the states
are the server's live ones).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.cli import CliRunner
from support.server import ThreadedServer
from test_cli_imports import HEAVY, hearth, loaded, offenders
from test_mcp_hosts import TEST_SERVER, marked_processes

from hearth.cli.main import main as app
from hearth.core.config import load_settings
from hearth.services import Services


@pytest.fixture(autouse=True)
def _keep_the_mcp_log_level() -> Any:
    """`hearth mcp` quiets the `hearth.mcp` log for its own process; run in this one, it must
    not quiet the tests that follow (they read that log)."""
    logger = logging.getLogger("hearth.mcp")
    level = logger.level
    yield
    logger.setLevel(level)


def our_servers() -> list[Any]:
    """Marked MCP processes running this checkout's test server: helpers that test other
    checkouts at the same time on this machine run their own copy, under another path."""
    found = []
    for proc in marked_processes():
        try:
            if TEST_SERVER in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            continue
    return found


DIES = ["-c", "import sys; print('cannot find my config', file=sys.stderr); sys.exit(3)"]


def cli(home: Path, *args: str, port: int | None = None) -> tuple[int, str]:
    env = {"HEARTH_PORT": str(port)} if port else None
    result = CliRunner().invoke(app, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


def write_servers(home: Path, servers: dict[str, Any]) -> None:
    (home / "mcp.json").write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")


def table(out: str) -> dict[str, list[str]]:
    """The listing's table: name -> [transport, state, tools]."""
    lines = out.split("\n\n", 1)[0].splitlines()
    assert lines[0].split() == ["NAME", "TRANSPORT", "STATE", "TOOLS"], out
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def three_servers(home: Path) -> None:
    write_servers(home, {
        "test": {"command": sys.executable, "args": [TEST_SERVER]},
        "dies": {"command": sys.executable, "args": DIES},
        "bad": {"args": ["no command"]},
    })  # fmt: skip


def test_no_servers_says_where_to_write_one_with_an_example_that_reads(home: Path) -> None:
    code, out = cli(home, "mcp", "ls")
    assert code == 0, out
    assert "No MCP servers are configured." in out
    assert f"{home / 'mcp.json'} (Hearth's file: add yours here, not created yet)" in out
    code, path_out = cli(home, "mcp", "path")
    assert code == 0 and str(home / "mcp.json") in path_out
    example = out[out.index("{") : out.rindex("}") + 1]
    (home / "mcp.json").write_text(example, encoding="utf-8")  # the example is a valid file
    code, out = cli(home, "mcp", "ls", "--no-start", "--json")
    answer = json.loads(out)
    assert answer["problems"] == []
    transports = {s["name"]: s["transport"] for s in answer["data"]}
    assert transports == {"time": "stdio", "remote": "http"}
    assert answer["files"] == [{"path": str(home / "mcp.json"), "kind": "hearth", "exists": True}]
    assert not our_servers()  # --no-start started nothing


@pytest.mark.slow
def test_ls_without_a_server_starts_lists_and_stops(home: Path) -> None:
    three_servers(home)
    code, out = cli(home, "mcp", "ls")
    assert code == 0, out
    assert table(out) == {"test": ["stdio", "running", "7"], "dies": ["stdio", "failed", "-"]}
    assert "test tools: add, fail, hang, crash, huge, noisy, spawn" in out
    assert "dies error: " in out and "stderr: cannot find my config" in out
    assert "problem server 'bad' in " in out and "needs `command`" in out
    assert not our_servers()  # the servers this command started are stopped
    code, out = cli(home, "mcp", "list", "--json")
    answer = json.loads(out)
    test = next(s for s in answer["data"] if s["name"] == "test")
    assert test["state"] == "running" and test["source"] == str(home / "mcp.json")
    assert {"name", "description", "input_schema"} <= set(test["tools"][0])
    assert [p["name"] for p in answer["problems"]] == ["bad"]


@pytest.mark.slow
def test_ls_asks_the_running_server_for_live_states(home: Path) -> None:
    three_servers(home)
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as server:
        code, out = cli(home, "mcp", "ls", "--no-start", port=server.port)
        assert code == 0, out
        assert table(out) == {"test": ["stdio", "stopped", "-"], "dies": ["stdio", "stopped", "-"]}
        assert not our_servers()
        code, out = cli(home, "mcp", "ls", port=server.port)
        assert code == 0 and table(out)["test"] == ["stdio", "running", "7"], out
        assert our_servers()  # the server started it and keeps it, as on any first use
        # a listing made here would say "stopped": this is the server's live state
        code, out = cli(home, "mcp", "ls", "--no-start", "--json", port=server.port)
        states = {s["name"]: s["state"] for s in json.loads(out)["data"]}
        assert states == {"test": "running", "dies": "failed"}
        env = {"HEARTH_PORT": str(server.port), "HEARTH_HOME": str(home)}
        code, out, modules = loaded(*hearth("mcp", "ls", "--no-start"), env=env)
        assert code == 0 and "hearth.cli.client" in modules, out
        # the small client only: neither the SDK, the settings' pydantic nor Rich
        assert offenders(modules, (*HEAVY, "rich", "mcp", "anyio", "hearth.mcp")) == []
    assert not our_servers()


@pytest.mark.slow
def test_listing_through_the_server_does_not_wait_out_a_failed_servers_delay(home: Path) -> None:
    """A listing shows a failed server as failed while its restart delay runs, rather than wait
    it out (up to 30 s) before answering (the first use after the delay starts it again)."""
    settings = {"baseRestartDelayMs": 3000, "maxRestartDelayMs": 3000}
    servers = {"dies": {"command": sys.executable, "args": DIES}}
    (home / "mcp.json").write_text(json.dumps({"mcpServers": servers, "mcpSettings": settings}))
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as server:
        for _ in range(2):
            code, out = cli(home, "mcp", "ls", "--json", port=server.port)
            assert code == 0, out
            [dies] = json.loads(out)["data"]
            assert (dies["state"], dies["restarts"]) == ("failed", 0), dies
        assert "cannot find my config" in dies["stderr_tail"]


@pytest.mark.slow
def test_call_runs_one_tool_once_and_says_what_went_wrong(home: Path) -> None:
    three_servers(home)
    code, out = cli(home, "mcp", "call", "test", "add", '{"a": 2, "b": 40}')
    assert (code, out) == (0, "42\n")
    code, out = cli(home, "mcp", "call", "test", "add", '{"a": 1, "b": 2}', "--json")
    answer = json.loads(out)
    assert code == 0 and answer["text"] == "3" and answer["result"]["isError"] is False
    assert answer["result"]["structuredContent"] == {"result": 3}
    code, out = cli(home, "mcp", "call", "test", "fail", '{"msg": "boom"}')
    assert code == 1 and "Error: tool 'fail' answered with an error: " in out and "boom" in out
    code, out = cli(home, "mcp", "call", "test", "nope")
    assert code == 1 and "has no tool 'nope'; its tools: add, fail" in out
    code, out = cli(home, "mcp", "call", "dies", "add")
    assert code == 1 and "is not available" in out and "cannot find my config" in out
    code, out = cli(home, "mcp", "call", "elsewhere", "add")
    assert code == 1 and "no MCP server named 'elsewhere' is configured" in out
    assert "(configured: dies, test)" in out
    assert not our_servers()


def test_call_refuses_arguments_that_are_not_a_json_object(home: Path) -> None:
    three_servers(home)
    for text in ("[1, 2]", "{a: 1}"):
        code, out = cli(home, "mcp", "call", "test", "add", text)
        assert code == 2 and "hearth mcp call: error: the arguments" in out, out
    assert not our_servers()  # refused before anything started
