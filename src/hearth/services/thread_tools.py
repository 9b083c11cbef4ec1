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
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.core import atomic
from hearth.core.errors import Conflict, InvalidRequest
from hearth.mcp import tool_names

if TYPE_CHECKING:
    from hearth.services.mcp import McpFunction, McpService, ServerPick, Toolset

log = logging.getLogger("hearth.mcp")

#: Hearth's keys in a thread's metadata (Jan keeps thread.json's metadata as it finds it).
KEY = "mcp"
APPROVED_KEY = "mcp_approved"
#: The marker of an answer that waits for the user's decision on a call.
AWAITING = "awaiting_approval"
APPROVALS_FILE = "mcp-approvals.json"
DECISIONS = ("once", "thread", "always", "deny")


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
    """A list of tool names from a file or a run (absent: none), read as the Responses face
    reads `allowed_tools` (`hearth.mcp.tool_names`)."""
    return [] if value is None else sorted(tool_names(value, param))


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
                "type": "mcp",
                "server_label": label,
                "allowed_tools": None if allowed is None else _names(allowed, "allowed_tools"),
                "require_approval": approval,
            }
        )
    return checked


def saved_tools(value: Any) -> list[dict[str, Any]] | None:
    """The `tools` of a waiting answer's marker, read back to continue it: names checked again
    as a run's, and every server asking for approval whatever the file says. The marker lives
    in messages.jsonl, which a stranger may have written: a `"require_approval": "never"` there
    must not waive the user's say on the continuation's later calls."""
    named = run_tools(value)
    return None if named is None else [{**t, "require_approval": "always"} for t in named]


def _allowed(tool: dict[str, Any]) -> frozenset[str] | None:
    allowed = tool.get("allowed_tools")
    return None if allowed is None else frozenset(allowed)


class Approvals:
    """`<state_dir>/mcp-approvals.json`: the tools allowed always, and the key that signs a
    conversation's approvals. One writer at a time; each write atomic. Made when absent; a file
    that is there but broken (a typo) is never rewritten, since that would wipe the approvals
    it holds: until it is fixed, nothing is approved (every call asks) and a decision that
    would write it is refused, naming the file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / APPROVALS_FILE
        self._lock = threading.Lock()
        self._warned: set[str] = set()  # each problem with the file is logged once

    def _load(self) -> tuple[dict[str, Any] | None, str | None]:
        """The file's data ({} when there is none), or None and what is wrong with it."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError) as exc:
            return None, f"cannot be read ({exc})"
        try:
            data = json.loads(text)
        except ValueError as exc:
            return None, f"is not valid JSON ({exc})"
        if not isinstance(data, dict):
            return None, "is not a JSON object"
        if "key" in data and _key_bytes(data["key"]) is None:
            return None, 'has a "key" that is not Hearth\'s (64 hex digits)'
        if "always" in data and not isinstance(data["always"], list):
            return None, 'has an "always" that is not a list'
        return data, None

    def _read(self) -> dict[str, Any] | None:
        data, problem = self._load()
        if problem is not None:
            self._warn(problem)
        return data

    def _warn(self, problem: str) -> None:
        if problem in self._warned:
            return
        self._warned.add(problem)
        log.warning(
            "MCP approvals file %s %s: until it is fixed no tool is approved for a "
            "conversation or always (every call asks) and Hearth leaves the file as it is. Fix "
            "it, or delete it to start afresh (the approvals it holds are then lost).",
            self.path, problem,
        )  # fmt: skip

    def _writable(self) -> dict[str, Any]:
        """The file's data to change (under the lock), or a refusal naming the broken file."""
        data, problem = self._load()
        if data is None:
            problem = problem or "is broken"
            self._warn(problem)
            raise Conflict(
                f"Hearth's MCP approvals file {self.path} {problem}, so this decision cannot "
                "be saved (the file is left as it is). Fix the file, or delete it to let Hearth "
                "make a new one (the approvals it holds are then lost); or answer 'once' or "
                "'deny'."
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.path, data, indent=2, newline=True, mode=0o600)

    def _key(self) -> bytes:
        """The signing key, made (and added to the file) on first use; a Conflict while the
        file is broken."""
        with self._lock:
            data = self._writable()
            key = _key_bytes(data.get("key"))
            if key is None:
                data["key"] = secrets.token_hex(32)
                self._write(data)
                key = bytes.fromhex(data["key"])
            return key

    def ready(self) -> None:
        """Refuse (409) now, before a decision is applied, when the file cannot take a grant."""
        self._key()

    def always(self) -> set[tuple[str, str]]:
        listed = (self._read() or {}).get("always")
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
            data = self._writable()
            listed = list(data.get("always") or [])  # entries it cannot read are kept
            if {"server": server, "tool": tool} not in listed:
                listed.append({"server": server, "tool": tool})
            data["always"] = listed
            self._write(data)

    def sign(self, thread_id: str, server: str, tool: str) -> str:
        message = json.dumps([thread_id, server, tool]).encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def thread_approved(self, thread_id: str, metadata: Any) -> set[tuple[str, str]]:
        """The conversation's approvals this Hearth signed (a forged or copied entry counts
        for nothing; while the key's file is broken, none counts)."""
        listed = metadata.get(APPROVED_KEY) if isinstance(metadata, dict) else None
        found: set[tuple[str, str]] = set()
        for entry in listed if isinstance(listed, list) else []:
            if not isinstance(entry, dict):
                continue
            server, tool, sig = entry.get("server"), entry.get("tool"), entry.get("sig")
            if not (isinstance(server, str) and isinstance(tool, str) and isinstance(sig, str)):
                continue
            try:
                mine = self.sign(thread_id, server, tool)
            except Conflict:  # the file is broken (logged): nothing is approved
                return set()
            if hmac.compare_digest(mine, sig):
                found.add((server, tool))
        return found


def _key_bytes(value: Any) -> bytes | None:
    """A signing key as the file keeps it (hex, at least 32 bytes), or None."""
    if not isinstance(value, str) or len(value) < 64:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


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
        offers any tool (no server on, or every tool of those on turned off): a plain chat,
        never a tool loop offering no tools (with a "required" tool_choice it could not
        answer)."""
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
        if not toolset.functions:
            return None
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

        trimmed = [name for name, off in servers if off]
        listed: dict[str, Any] = {}
        if trimmed:  # listed together, as toolset starts them (one connect timeout, not N)
            hosts = await self.mcp.hosts()
            answers = await asyncio.gather(*(hosts.list_tools(name) for name in trimmed),
                                           return_exceptions=True)  # fmt: skip
            listed = dict(zip(trimmed, answers, strict=True))
        picks = []
        for name, off in servers:
            tools = listed.get(name)
            if not off or tools is None or isinstance(tools, BaseException):
                picks.append(ServerPick(name))  # unknown or broken: toolset says which and why
                continue
            picks.append(ServerPick(name, frozenset(t.name for t in tools) - set(off)))
        return picks
