"""MCP servers as the user configured them, and nothing else (issue 26, point 1).

Why a module of its own: an MCP server entry starts a program, so it is the trust boundary of
SECURITY.md. Only two files ever define a server: the user's `<state dir>/mcp.json` and, in a
Jan data folder, Jan's `<data>/mcp_config.json`. Never a model.json, a thread, a request or a
download. Both use the `mcpServers` format Claude Desktop, Cursor and Jan share. Each entry is
checked on its own: a bad entry becomes a `ServerProblem` naming it and the fix, and never hides
its neighbours. The files are read non-blocking and bounded (`read_regular`), so a FIFO or a
giant file cannot stall Hearth; callers still run `load` in a worker thread.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hearth.core.config import Settings
from hearth.core.strangefile import read_regular

#: Larger than any hand-written config; small enough to parse on any machine.
MAX_CONFIG_BYTES = 1 << 20
HEARTH_FILE = "mcp.json"
JAN_FILE = "mcp_config.json"

Transport = Literal["stdio", "http", "sse"]
_HTTP_TYPES = {"http", "streamable-http", "streamable_http", "streamableHttp"}


@dataclass(frozen=True)
class McpSettings:
    """Timeouts and restart backoff; Jan's `mcpSettings` names and defaults."""

    call_timeout: float = 30.0
    base_restart_delay: float = 1.0
    max_restart_delay: float = 30.0
    backoff_multiplier: float = 2.0


@dataclass(frozen=True)
class ServerConfig:
    """One server the user configured. `source` is the file that defined it."""

    name: str
    source: Path
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    active: bool = True
    call_timeout: float | None = None  # the entry's own `timeout`; else the settings'


@dataclass(frozen=True)
class ServerProblem:
    """An entry (or a whole file, `name` "") that could not be read, and why."""

    name: str
    source: Path
    message: str


@dataclass(frozen=True)
class McpConfig:
    servers: dict[str, ServerConfig] = field(default_factory=dict)
    problems: tuple[ServerProblem, ...] = ()
    settings: McpSettings = McpSettings()


class EntryError(ValueError):
    """One entry's problem, already worded for the user."""


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise EntryError(f'`{key}` must be a list of strings, e.g. ["-y", "server"]')
    return tuple(value)


def _mapping(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise EntryError(f'`{key}` must be an object of strings, e.g. {{"KEY": "value"}}')
    return dict(value)


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise EntryError(f"`{key}` must be a positive number of seconds")
    return float(value)


def _transport(entry: dict[str, Any]) -> Transport:
    """Jan's rule for `type`, widened to Claude Code's and Cursor's spellings."""
    kind = entry.get("type")
    if kind is not None and not isinstance(kind, str):
        raise EntryError('`type` must be "stdio", "http" or "sse"')
    if kind in _HTTP_TYPES:
        return "http"
    if kind == "sse":
        return "sse"
    if kind in (None, "", "stdio") and not entry.get("command") and entry.get("url"):
        return "http"  # Cursor: a `url` with no type
    if kind not in (None, "", "stdio"):
        raise EntryError(f'unknown `type` {kind!r}: use "stdio", "http" or "sse"')
    return "stdio"


def parse_entry(name: str, entry: Any, source: Path) -> ServerConfig:
    """One `mcpServers` entry as a typed record; `EntryError` says what is wrong and the fix."""
    if not name.strip() or len(name) > 200:
        raise EntryError("a server's name must be 1-200 characters")
    if not isinstance(entry, dict):
        raise EntryError('the entry must be an object such as {"command": ..., "args": [...]}')
    transport = _transport(entry)
    active = entry.get("active", True)
    if not isinstance(active, bool) or not isinstance(entry.get("disabled", False), bool):
        raise EntryError("`active` and `disabled` must be true or false")
    timeout = entry.get("timeout")
    common: dict[str, Any] = {
        "name": name,
        "source": source,
        "transport": transport,
        "active": active and not entry.get("disabled", False),
        "call_timeout": None if timeout is None else _seconds(timeout, "timeout"),
    }
    if transport == "stdio":
        command = entry.get("command")
        if not isinstance(command, str) or not command.strip():
            raise EntryError("a stdio server needs `command` (the program to run), or a `url`")
        cwd = entry.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise EntryError("`cwd` must be a folder path (a string)")
        return ServerConfig(
            command=command,
            args=_strings(entry.get("args", []), "args"),
            env=_mapping(entry.get("env", {}), "env"),
            cwd=cwd,
            **common,
        )
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise EntryError(f"a {transport} server needs `url`, an http:// or https:// address")
    return ServerConfig(url=url, headers=_mapping(entry.get("headers", {}), "headers"), **common)


def _settings(raw: Any) -> McpSettings:
    """Jan's `mcpSettings`; a bad value keeps its default (the file's problem is reported)."""
    base = McpSettings()
    if not isinstance(raw, dict):
        return base
    picked: dict[str, float] = {}
    for key, attr, scale in (
        ("toolCallTimeoutSeconds", "call_timeout", 1.0),
        ("baseRestartDelayMs", "base_restart_delay", 0.001),
        ("maxRestartDelayMs", "max_restart_delay", 0.001),
        ("backoffMultiplier", "backoff_multiplier", 1.0),
    ):
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e9:
            picked[attr] = float(value) * scale
    return McpSettings(**{**base.__dict__, **picked})


def read_file(path: Path) -> McpConfig:
    """One `mcpServers` file. Absent: empty. Unreadable or not JSON: one problem naming it."""
    try:
        data = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return McpConfig()
    except OSError as exc:
        return McpConfig(problems=(ServerProblem("", path, f"cannot read {path}: {exc}"),))
    if len(data) > MAX_CONFIG_BYTES:
        message = f"{path} is larger than {MAX_CONFIG_BYTES} bytes: is it the right file?"
        return McpConfig(problems=(ServerProblem("", path, message),))
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return McpConfig(problems=(ServerProblem("", path, f"{path} is not JSON: {exc}"),))
    entries = document.get("mcpServers", {}) if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        message = f'{path} needs an object {{"mcpServers": {{"<name>": {{...}}}}}}'
        return McpConfig(problems=(ServerProblem("", path, message),))
    servers: dict[str, ServerConfig] = {}
    problems: list[ServerProblem] = []
    for name, entry in entries.items():
        try:
            servers[name] = parse_entry(name, entry, path)
        except EntryError as exc:
            problems.append(ServerProblem(name, path, f"server {name!r} in {path}: {exc}"))
    return McpConfig(servers, tuple(problems), _settings(document.get("mcpSettings")))


def config_paths(settings: Settings) -> list[Path]:
    """The files that may define servers, Hearth's own first (it wins a name clash)."""
    paths = [settings.state_dir / HEARTH_FILE]
    if settings.jan:
        paths.append(settings.home / JAN_FILE)
    return paths


def config_files(settings: Settings) -> list[dict[str, Any]]:
    """The files that may define servers, for a person who wants to add one: Hearth's own
    `mcp.json` (`kind` "hearth": where to write) and, in a Jan data folder, Jan's file
    (`kind` "jan"). Blocking (a stat each): call it from a worker thread."""
    return [
        {"path": str(path), "kind": "hearth" if i == 0 else "jan", "exists": path.is_file()}
        for i, path in enumerate(config_paths(settings))
    ]


def load(settings: Settings) -> McpConfig:
    """Every configured server. Blocking file reads: call it from a worker thread.

    Settings (timeouts, backoff) come from the last file that has `mcpSettings`: Hearth's own
    file has none in Jan's format unless the user writes one, so Jan's apply in a Jan folder."""
    servers: dict[str, ServerConfig] = {}
    problems: list[ServerProblem] = []
    chosen = McpSettings()
    for path in config_paths(settings):
        found = read_file(path)
        problems.extend(found.problems)
        if found.settings != McpSettings():
            chosen = found.settings
        for name, server in found.servers.items():
            if name in servers:
                message = (
                    f"server {name!r} in {path} is also in {servers[name].source}; "
                    "that one is used: rename one of them to keep both"
                )
                problems.append(ServerProblem(name, path, message))
                continue
            servers[name] = server
    return McpConfig(servers, tuple(problems), chosen)
