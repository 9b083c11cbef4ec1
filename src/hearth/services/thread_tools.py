"""Which MCP tools a conversation's run offers its model, and who approved which (issue 26).

A conversation turns servers on in its own thread.json, under Hearth's key `metadata.mcp`:

    "mcp": {"servers": [{"name": "time"}, {"name": "files", "tools_off": ["write_file"]}],
            "tool_choice": "auto" | "required"}

It NAMES servers, never defines one: only the user's mcp.json (or Jan's mcp_config.json) starts
a program, so a thread.json from a stranger (Jan, a shared folder, an import) that carries
`command`s or `url`s starts nothing; a name that is not configured is a 400 naming the
configured ones. A run may name servers instead, in the Responses API's shape: `"tools":
[{"type": "mcp", "server_label": "time", "allowed_tools": ["get_current_time"],
"require_approval": "never"}]` (a run's caller holds the API key: it may waive approval).

Approvals, because a tool's result is untrusted text that can steer the model: a call runs
without asking when its tool is allowed for the conversation (`metadata.mcp_approved`, each
entry signed with a key only this Hearth holds, so a stranger's thread.json cannot approve
anything) or always (`<state_dir>/mcp-approvals.json`, Hearth's own file, never Jan's).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.core import atomic
from hearth.core.errors import InvalidRequest

if TYPE_CHECKING:
    from hearth.services.mcp import McpFunction, McpService, ServerPick, Toolset

#: Hearth's keys in a thread's metadata (Jan keeps thread.json's metadata as it finds it).
KEY = "mcp"
APPROVED_KEY = "mcp_approved"
#: The marker of an answer that waits for the user's decision on a call.
AWAITING = "awaiting_approval"
APPROVALS_FILE = "mcp-approvals.json"
DECISIONS = ("once", "thread", "always", "deny")
#: What a denied call answers the model (Jan's words, lib/completion.ts).


@dataclass
class ToolPlan:
    """What one run offers: the functions, the first round's tool_choice, the bound on rounds,
    and the (server, tool) pairs that run without asking."""

    toolset: Toolset
    first_choice: str
    max_rounds: int
    trusted: set[tuple[str, str]] = field(default_factory=set)
    named: list[dict[str, Any]] | None = None  # the run's own `tools`, kept for a continuation

    def needs_approval(self, function: McpFunction) -> bool:
        return (function.server, function.tool) not in self.trusted

    def chat_tools(self) -> list[dict[str, Any]]:
        return self.toolset.chat_tools()


def _names(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"'{param}' must be a list of tool names.", param=param)
    return list(value)


def thread_setting(metadata: Any) -> tuple[list[tuple[str, list[str]]], str]:
    """The conversation's servers as (name, tools turned off), and its first-round tool_choice.
    Any other key of an entry (a stranger's `command`, `url`) is ignored: names only."""
    setting = metadata.get(KEY) if isinstance(metadata, dict) else None
    if setting is None:
        return [], "auto"
    param = f"metadata.{KEY}"
    if not isinstance(setting, dict):
        raise InvalidRequest(
            f"The conversation's '{param}' must be an object like "
            '{"servers": [{"name": "time"}]}; fix or clear it with POST /v1/threads/{id}.',
            param=param,
        )
    servers = setting.get("servers") or []
    if not isinstance(servers, list):
        raise InvalidRequest(f"'{param}.servers' must be a list of server names.", param=param)
    found: list[tuple[str, list[str]]] = []
    for entry in servers:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                f"Each of '{param}.servers' names a server: a string or "
                '{"name": "<server>", "tools_off": [...]}.',
                param=param,
            )
        off = entry.get("tools_off") if isinstance(entry, dict) else None
        found.append((name, _names(off, f"{param}.servers.tools_off")))
    choice = setting.get("tool_choice", "auto")
    if choice not in ("auto", "required"):
        raise InvalidRequest(f'\'{param}.tool_choice\' must be "auto" or "required".', param=param)
    return found, str(choice)


def run_tools(value: Any) -> list[dict[str, Any]] | None:
    """A run's `tools` (OpenAI's MCP tool shape), checked; None when the run names none."""
    if value is None:
        return None
    hint = '[{"type": "mcp", "server_label": "<server>", "allowed_tools": [...]}]'
    if not isinstance(value, list):
        raise InvalidRequest(f"'tools' must be a list like {hint}.", param="tools")
    checked = []
    for item in value:
        if not isinstance(item, dict) or item.get("type") != "mcp":
            raise InvalidRequest(
                f"A run's tools are MCP servers the user configured: {hint}. A server is "
                "named here, never defined (no server_url, command or headers).",
                param="tools",
            )
        if "server_url" in item or "connector_id" in item:
            raise InvalidRequest(
                "A run names a configured MCP server by 'server_label'; 'server_url' and "
                "'connector_id' are not accepted (only the user's mcp.json starts servers).",
                param="tools",
            )
        label = item.get("server_label")
        if not isinstance(label, str) or not label:
            raise InvalidRequest(f"Each MCP tool needs a 'server_label': {hint}.", param="tools")
        allowed = item.get("allowed_tools")
        if isinstance(allowed, dict):  # OpenAI's filter form
            allowed = allowed.get("tool_names")
        approval = item.get("require_approval", "always")
        if approval not in ("always", "never"):
            raise InvalidRequest('\'require_approval\' must be "always" or "never".', param="tools")
        checked.append(
            {
                "server_label": label,
                "allowed_tools": None if allowed is None else _names(allowed, "allowed_tools"),
                "require_approval": approval,
            }
        )
    return checked


def _allowed(tool: dict[str, Any]) -> frozenset[str] | None:
    allowed = tool.get("allowed_tools")
    return None if allowed is None else frozenset(allowed)


class Approvals:
    """`<state_dir>/mcp-approvals.json`: the tools allowed always, and the key that signs a
    conversation's approvals. One writer at a time; each write atomic."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / APPROVALS_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _key(self) -> bytes:
        """The signing key, made (and written) on first use."""
        with self._lock:
            data = self._read()
            key = data.get("key")
            if not isinstance(key, str) or len(key) < 32:
                data["key"] = key = secrets.token_hex(32)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_json(self.path, data, indent=2, newline=True, mode=0o600)
            return bytes.fromhex(key)

    def always(self) -> set[tuple[str, str]]:
        listed = self._read().get("always")
        found: set[tuple[str, str]] = set()
        for entry in listed if isinstance(listed, list) else []:
            server, tool = (
                (entry.get(k) for k in ("server", "tool"))
                if isinstance(entry, dict)
                else (None, None)
            )
            if isinstance(server, str) and isinstance(tool, str):
                found.add((server, tool))
        return found

    def allow_always(self, server: str, tool: str) -> None:
        self._key()
        with self._lock:
            data = self._read()
            listed = [e for e in data.get("always") or [] if isinstance(e, dict)]
            if {"server": server, "tool": tool} not in listed:
                listed.append({"server": server, "tool": tool})
            data["always"] = listed
            atomic.write_json(self.path, data, indent=2, newline=True, mode=0o600)

    def sign(self, thread_id: str, server: str, tool: str) -> str:
        message = json.dumps([thread_id, server, tool]).encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def thread_approved(self, thread_id: str, metadata: Any) -> set[tuple[str, str]]:
        """The conversation's approvals this Hearth signed (a forged or copied entry counts
        for nothing)."""
        listed = metadata.get(APPROVED_KEY) if isinstance(metadata, dict) else None
        found: set[tuple[str, str]] = set()
        for entry in listed if isinstance(listed, list) else []:
            if not isinstance(entry, dict):
                continue
            server, tool, sig = entry.get("server"), entry.get("tool"), entry.get("sig")
            if not (isinstance(server, str) and isinstance(tool, str) and isinstance(sig, str)):
                continue
            if hmac.compare_digest(self.sign(thread_id, server, tool), sig):
                found.add((server, tool))
        return found


class ThreadTools:
    """MCP tools for thread runs: the plan of a run, and the approvals it honours."""

    def __init__(self, mcp_of: Callable[[], McpService], state_dir: Path, max_rounds: int) -> None:
        self.mcp_of = mcp_of
        self.approvals = Approvals(state_dir)
        self.max_rounds = max(1, max_rounds)

    @property
    def mcp(self) -> McpService:
        return self.mcp_of()

    async def plan(
        self, thread_id: str, metadata: Any, named: list[dict[str, Any]] | None
    ) -> ToolPlan | None:
        """The run's tools: the ones it names, else its conversation's; None when neither
        turns any server on (the run is a plain chat)."""
        from hearth.services.mcp import ServerPick

        servers, choice = thread_setting(metadata)
        trusted: set[tuple[str, str]] = set()
        if named is not None:
            picks = [ServerPick(t["server_label"], _allowed(t)) for t in named]
            param = "tools"
        else:
            picks = await self._thread_picks(servers)
            param = f"metadata.{KEY}"
        if not picks:
            return None
        toolset = await self.mcp.toolset(picks, param=param)
        if named is not None:
            never = {t["server_label"] for t in named if t["require_approval"] == "never"}
            trusted |= {(f.server, f.tool) for f in toolset.functions.values() if f.server in never}
        trusted |= await asyncio.to_thread(self._approved, thread_id, metadata)
        kept = None if named is None else [{**t, "require_approval": "always"} for t in named]
        return ToolPlan(toolset, choice, self.max_rounds, trusted, kept)

    def _approved(self, thread_id: str, metadata: Any) -> set[tuple[str, str]]:
        return self.approvals.always() | self.approvals.thread_approved(thread_id, metadata)

    async def _thread_picks(self, servers: list[tuple[str, list[str]]]) -> list[ServerPick]:
        """The conversation's servers as picks: every tool but those turned off (a tool the
        server no longer has is simply not offered)."""
        from hearth.services.mcp import ServerPick

        picks = []
        for name, off in servers:
            if not off:
                picks.append(ServerPick(name))
                continue
            hosts = await self.mcp.hosts()
            try:
                tools = await hosts.list_tools(name)
            except Exception:  # unknown or broken: toolset says which and why
                picks.append(ServerPick(name))
                continue
            picks.append(ServerPick(name, frozenset(t.name for t in tools) - set(off)))
        return picks
