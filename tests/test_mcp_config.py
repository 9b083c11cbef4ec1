"""The user's MCP config files (issue 26, point 1): typed records, and each bad entry named."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hearth.core.config import load_settings
from hearth.mcp.config import MAX_CONFIG_BYTES, McpSettings, load, read_file


def write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_each_transport_is_read_and_a_bad_entry_never_hides_the_others(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
                "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "k"}},
                "events": {"type": "sse", "url": "https://example.org/sse", "active": False},
                "jan-http": {"command": "", "args": [], "type": "http", "url": "http://h/mcp"},
                "no-command": {"args": ["x"]},
                "bad-args": {"command": "x", "args": "not a list"},
                "bad-env": {"command": "x", "env": {"A": 1}},
                "bad-type": {"type": "websocket", "url": "ws://x"},
                "bad-url": {"type": "http", "url": "file:///etc/passwd"},
                "not-object": ["x"],
            }
        },
    )
    config = read_file(path)
    assert set(config.servers) == {"time", "remote", "events", "jan-http"}
    time = config.servers["time"]
    assert (time.transport, time.command, time.args, time.env) == (
        "stdio", "uvx", ("mcp-server-time",), {"TZ": "UTC"},
    )  # fmt: skip
    assert config.servers["remote"].transport == "http"
    assert config.servers["remote"].headers == {"X-Key": "k"}
    assert config.servers["events"].transport == "sse"
    assert config.servers["events"].active is False
    assert config.servers["jan-http"].transport == "http"
    problems = {problem.name: problem.message for problem in config.problems}
    assert set(problems) == {
        "no-command", "bad-args", "bad-env", "bad-type", "bad-url", "not-object",
    }  # fmt: skip
    assert "needs `command`" in problems["no-command"]
    assert "`args` must be a list of strings" in problems["bad-args"]
    assert "`env` must be an object of strings" in problems["bad-env"]
    assert "unknown `type` 'websocket'" in problems["bad-type"]
    assert "http:// or https://" in problems["bad-url"]
    assert all(str(path) in message for message in problems.values())


def test_a_broken_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    absent = read_file(tmp_path / "absent.json")
    assert not absent.servers and not absent.problems
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "is not JSON" in read_file(broken).problems[0].message
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CONFIG_BYTES + 1))
    assert "larger than" in read_file(big).problems[0].message
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # would block a plain open() forever
    assert "not a regular file" in read_file(fifo).problems[0].message
    wrong = write(tmp_path / "wrong.json", {"mcpServers": ["x"]})
    assert "needs an object" in read_file(wrong).problems[0].message


def test_jan_folder_reads_jan_config_and_settings(tmp_path: Path) -> None:
    """In a Jan folder both files count; Hearth's own wins a clash, which is reported."""
    jan = tmp_path / "jan"
    write(jan / "settings.json", {})
    (jan / "threads").mkdir()
    (jan / "llamacpp").mkdir()
    settings = load_settings(home=jan, env={}, jan=True)
    write(
        jan / "mcp_config.json",
        {
            "mcpServers": {
                "fetch": {"command": "uvx", "args": ["mcp-server-fetch"], "timeout": 12},
                "shared": {"command": "jan-one", "args": []},
            },
            "mcpSettings": {
                "toolCallTimeoutSeconds": 5,
                "baseRestartDelayMs": 200,
                "maxRestartDelayMs": 1000,
                "backoffMultiplier": 3,
            },
        },
    )
    write(settings.state_dir / "mcp.json", {"mcpServers": {"shared": {"command": "mine"}}})
    config = load(settings)
    assert set(config.servers) == {"fetch", "shared"}
    assert config.servers["shared"].command == "mine"
    assert config.servers["fetch"].call_timeout == 12
    assert config.settings == McpSettings(5.0, 0.2, 1.0, 3.0)
    assert [problem.name for problem in config.problems] == ["shared"]
    assert "also in" in config.problems[0].message


def test_outside_a_jan_folder_only_hearths_file_counts(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, env={})
    write(tmp_path / "mcp_config.json", {"mcpServers": {"jan": {"command": "x"}}})
    assert not load(settings).servers
    write(settings.state_dir / "mcp.json", {"mcpServers": {"mine": {"command": "x"}}})
    assert set(load(settings).servers) == {"mine"}
