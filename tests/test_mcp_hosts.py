"""Running MCP servers (issue 26, points 1 and 4): first use, timeout, result cap, crash and
restart, stderr bound, a broken server beside a working one, and a stop that leaves no process.

The servers are real: tests/support/mcp_server.py (written with the SDK) and PyPI's
`mcp-server-time`, each started by Hearth as the user's config says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from hearth.core.config import load_settings
from hearth.mcp.config import McpConfig, McpSettings, parse_entry
from hearth.mcp.hosts import MARKER, McpCallError, McpHosts, McpUnavailable
from hearth.mcp.redact import Redactor
from hearth.services import mcp as mcp_service
from hearth.services.mcp import McpService
from tests.support.waiting import wait_for

TEST_SERVER = str(Path(__file__).parent / "support" / "mcp_server.py")


def hosts_for(entries: dict[str, dict[str, Any]], **settings: Any) -> McpHosts:
    source = Path("test-mcp.json")
    servers = {name: parse_entry(name, entry, source) for name, entry in entries.items()}
    return McpHosts(McpConfig(servers, (), McpSettings(**settings)), result_cap=1000)


def marked_processes() -> list[psutil.Process]:
    """Every live process a Hearth MCP host started (they carry the marker), zombies aside."""
    found = []
    for proc in psutil.process_iter():
        try:
            if MARKER in proc.environ() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def our_processes() -> list[psutil.Process]:
    """The marked processes started under this test process (other test runs on the machine
    may have their own at the same time)."""
    children = {child.pid for child in psutil.Process().children(recursive=True)}
    return [proc for proc in marked_processes() if proc.pid in children]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


TEST_ENTRY = {"command": sys.executable, "args": [TEST_SERVER], "timeout": 3}


@pytest.mark.slow
def test_calls_timeout_cap_and_stderr_bound() -> None:
    async def scenario() -> None:
        hosts = hosts_for({"test": TEST_ENTRY})
        host = hosts.host("test")
        assert host.status().state == "stopped"  # nothing runs before first use
        names = {tool.name for tool in await hosts.list_tools("test")}
        assert {"add", "hang", "crash", "huge", "noisy"} <= names
        assert host.status().state == "running"
        added = await hosts.call_tool("test", "add", {"a": 2, "b": 3}, request="req-1")
        assert (added.text, added.is_error, added.cut) == ("5", False, False)
        failed = await hosts.call_tool("test", "fail", {"msg": "boom"})
        assert failed.is_error and "boom" in failed.text
        huge = await hosts.call_tool("test", "huge", {"n": 300_000})
        assert huge.cut and huge.full_chars == 300_000 and huge.result is None
        assert huge.text.startswith("x" * 1000)
        assert huge.text.endswith(
            "[cut by Hearth: the result was 300000 characters; these are the first 1000]"
        )
        noisy = await hosts.call_tool("test", "noisy", {"lines": 20_000})
        assert noisy.text == "done"
        with pytest.raises(McpCallError) as timed_out:
            await hosts.call_tool("test", "hang", {"seconds": 120})
        assert timed_out.value.code == REQUEST_TIMEOUT
        again = await hosts.call_tool("test", "add", {"a": 1, "b": 1})
        assert again.text == "2"  # the session outlives a timed-out call
        tail = host.status().stderr_tail
        assert len(tail) <= 50 and "noise 19999" in tail
        await hosts.aclose()
        assert not marked_processes()
        assert host.status().state == "stopped"

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_stop_leaves_no_process_behind() -> None:
    """The SDK's stop closes stdin and kills the process group only if the leader lingers;
    a server that exits at once leaves its children running unless Hearth sweeps them."""

    async def scenario() -> None:
        hosts = hosts_for({"test": TEST_ENTRY})
        sums = await asyncio.gather(
            *(hosts.call_tool("test", "add", {"a": n, "b": 1}) for n in range(3))
        )
        assert [outcome.text for outcome in sums] == ["1", "2", "3"]
        assert len(marked_processes()) == 1  # three first uses at once start one server
        orphan = int((await hosts.call_tool("test", "spawn")).text)
        assert alive(orphan) and marked_processes()
        await hosts.aclose()
        assert not alive(orphan), "the server's child outlived Hearth's stop"
        assert not marked_processes()

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_stdio_server_gets_a_minimal_environment_not_hearths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hearth's secrets (its API key, a Hugging Face token) stay out of a server's
    environment; the server gets the SDK's short safe list plus its own `env` from mcp.json."""
    monkeypatch.setenv("HEARTH_API_KEY", "secret-key-of-hearth-0123456789")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    entry = {**TEST_ENTRY, "env": {"MY_SETTING": "mine"}}

    async def scenario() -> None:
        hosts = hosts_for({"test": entry})
        await hosts.call_tool("test", "add", {"a": 1, "b": 1})
        (server,) = marked_processes()
        environment = server.environ()
        await hosts.aclose()
        assert environment["MY_SETTING"] == "mine" and "PATH" in environment
        assert "HEARTH_API_KEY" not in environment and "HF_TOKEN" not in environment
        leftover = set(environment) - {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"}
        assert leftover == {"MY_SETTING", MARKER}

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_crashed_server_restarts_after_its_backoff() -> None:
    async def scenario() -> None:
        hosts = hosts_for({"test": TEST_ENTRY}, base_restart_delay=0.05)
        host = hosts.host("test")
        first = {proc.pid for proc in marked_processes()}
        await hosts.list_tools("test")
        leaders = {proc.pid for proc in marked_processes()} - first
        orphan = int((await hosts.call_tool("test", "spawn")).text)
        with pytest.raises(McpCallError) as crashed:
            await hosts.call_tool("test", "crash")
        assert crashed.value.code == CONNECTION_CLOSED
        assert "connection closed" in (host.status().last_error or "")
        answer = await hosts.call_tool("test", "add", {"a": 20, "b": 22})
        assert answer.text == "42"
        assert host.status().restarts == 1 and host.status().state == "running"
        assert not any(alive(pid) for pid in leaders)
        assert not alive(orphan), "the crashed server's child outlived it"
        await hosts.aclose()
        assert not marked_processes()

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_broken_server_shows_its_error_and_the_others_still_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        hosts = hosts_for(
            {
                "broken": {"command": str(tmp_path / "no-such-program"), "args": []},
                "exits": {
                    "command": sys.executable,
                    "args": ["-c", "import sys; print('bad config', file=sys.stderr)"],
                },
                "off": {**TEST_ENTRY, "active": False},
                "test": TEST_ENTRY,
            },
            base_restart_delay=600,
            max_restart_delay=600,
        )
        with pytest.raises(McpUnavailable, match=r"'broken' is not available: .*no-such-program"):
            await hosts.list_tools("broken")
        with pytest.raises(McpUnavailable, match="next try in"):
            await hosts.list_tools("broken")  # the backoff: no start storm
        with pytest.raises(McpUnavailable, match="stderr: bad config"):
            await hosts.list_tools("exits")
        with pytest.raises(McpUnavailable, match="turned off"):
            await hosts.list_tools("off")
        with pytest.raises(
            McpUnavailable,
            match=r"no MCP server named 'ghost'.*configured: broken, exits, off, test",
        ):
            await hosts.list_tools("ghost")
        assert (await hosts.call_tool("test", "add", {"a": 1, "b": 2})).text == "3"
        states = {status.name: status.state for status in hosts.statuses()}
        assert states == {
            "broken": "failed",
            "exits": "failed",
            "off": "inactive",
            "test": "running",
        }
        await hosts.aclose()
        assert not marked_processes()

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_reference_time_server_from_pypi() -> None:
    async def scenario() -> None:
        hosts = hosts_for({"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}})
        tools = {tool.name: tool for tool in await hosts.list_tools("time")}
        assert set(tools) == {"get_current_time", "convert_time"}
        assert tools["get_current_time"].input_schema["required"] == ["timezone"]
        now = await hosts.call_tool("time", "get_current_time", {"timezone": "UTC"})
        assert not now.is_error and '"timezone": "UTC"' in now.text
        mars = await hosts.call_tool("time", "get_current_time", {"timezone": "Mars/Olympus"})
        assert mars.is_error and "Invalid timezone" in mars.text
        await hosts.aclose()
        assert not marked_processes()

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_server_flooding_stdout_fails_its_start_without_flooding_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flood = str(Path(__file__).parent / "support" / "mcp_stdout_flood.py")

    async def scenario() -> None:
        source = Path("test-mcp.json")
        entry = parse_entry("flood", {"command": sys.executable, "args": [flood]}, source)
        hosts = McpHosts(McpConfig({"flood": entry}), connect_timeout=1.0)
        with pytest.raises(McpUnavailable, match="'flood' is not available"):
            await hosts.list_tools("flood")
        assert hosts.host("flood").status().state == "failed"
        await hosts.aclose()
        assert not marked_processes()

    with caplog.at_level(logging.ERROR, logger="mcp.client.stdio"):
        asyncio.run(scenario())
    parse_errors = [r for r in caplog.records if r.name == "mcp.client.stdio"]
    assert 0 < len(parse_errors) <= 5
    assert all(record.exc_info is None for record in parse_errors)


@pytest.mark.slow
@pytest.mark.parametrize(("transport", "path"), [("streamable-http", "/mcp"), ("sse", "/sse")])
def test_remote_servers_over_http(transport: str, path: str) -> None:
    """The same test server behind streamable HTTP and SSE, reached by `url` (and `type`)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, TEST_SERVER, transport, str(port)])
    try:
        wait_for(lambda: port_open(port), what=f"the {transport} MCP server on port {port}")
        kind = "sse" if transport == "sse" else "http"
        url = f"http://127.0.0.1:{port}{path}"

        async def scenario() -> None:
            hosts = hosts_for({"remote": {"type": kind, "url": url, "headers": {"X-T": "1"}}})
            assert "add" in {tool.name for tool in await hosts.list_tools("remote")}
            assert (await hosts.call_tool("remote", "add", {"a": 4, "b": 5})).text == "9"
            huge = await hosts.call_tool("remote", "huge", {"n": 5000})
            assert huge.cut and huge.full_chars == 5000
            await hosts.aclose()

        asyncio.run(scenario())
    finally:
        server.kill()
        server.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_secrets_of_a_remote_server_are_named_never_shown() -> None:
    """The address (as written, as httpx writes it, on any path of its host), its query
    values, a long path segment and the headers' values leave an error's text; the rest
    of the text, and other hosts' addresses, stay."""
    source = Path("test-mcp.json")
    key = "k3y-0f-the-user"
    url = f"https://mcp.example.com/v1/{key}x{key}/sse?api_key={key}%2B1&mode=sse"
    entry = {"type": "sse", "url": url, "headers": {"Authorization": "Bearer t0ken-s3cret"}}
    redactor = Redactor(parse_entry("remote", entry, source))
    said = redactor.clean(
        f"Client error '401 Unauthorized' for url '{url}'\n"
        "redirected to https://MCP.example.com/other?x=1; see https://developer.mozilla.org/401"
        f" (key {key}+1, token t0ken-s3cret)"
    )
    for secret in (key, "t0ken-s3cret", "api_key", "/v1/"):
        assert secret not in said
    assert said.startswith("Client error '401 Unauthorized' for url '<url of 'remote'>'")
    assert "redirected to <url of 'remote'> see" in said
    assert "see https://developer.mozilla.org/401 (key <secret of 'remote'>, token" in said
    stdio = Redactor(parse_entry("local", TEST_ENTRY, source))
    assert stdio.clean("nothing to hide: 1 sse") == "nothing to hide: 1 sse"


@pytest.mark.slow
def test_a_server_removed_while_a_request_waits_out_its_backoff_never_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request sleeps in a failed server's restart delay; meanwhile the user removes the
    server from mcp.json. The request wakes to an error and starts nothing (the old entry's
    program would run with nothing to stop it)."""
    monkeypatch.setattr(mcp_service, "RECHECK", 0.0)
    settings = load_settings(home=tmp_path, env={})
    script = tmp_path / "server.py"  # absent at first: the first start fails
    config = settings.state_dir / "mcp.json"
    slow_backoff = {"baseRestartDelayMs": 10_000, "toolCallTimeoutSeconds": 30}
    entry = {"command": sys.executable, "args": [str(script)]}
    config.write_text(json.dumps({"mcpServers": {"srv": entry}, "mcpSettings": slow_backoff}))

    async def scenario() -> None:
        service = McpService(settings)
        hosts = await service.hosts()
        with pytest.raises(McpUnavailable, match="'srv' is not available"):
            await hosts.list_tools("srv")
        script.symlink_to(TEST_SERVER)  # the old entry would now start a working server
        waiting = asyncio.create_task(hosts.list_tools("srv"))  # sleeps in the backoff
        await asyncio.sleep(0.05)
        config.write_text(json.dumps({"mcpServers": {}, "mcpSettings": slow_backoff}))
        assert [host.name for host in await service.hosts()] == []  # re-read: srv stopped
        with pytest.raises(McpUnavailable, match="'srv' was removed or changed"):
            await waiting
        assert not our_processes()
        await service.aclose()

    asyncio.run(scenario())
    assert not our_processes()
