"""The user's MCP servers as the faces see them: their status, the tools a request may offer a
model, and one call (issue 26).

Why one service: the Responses API, a conversation's run and the page all offer MCP tools and
run their calls, and each must (a) name only servers the user configured, (b) offer the model
functions under names it can call, and (c) log which server ran which tool for which request.
Doing that once here keeps the three faces to their own shapes (items, Jan's
`metadata.tool_calls`, the page's cards).

The configuration is read on first use, in a worker thread, and read again when one of its
files changes (checked at most every `RECHECK` seconds): a server whose entry is unchanged keeps
running, a changed or removed one is stopped. No request can add a server: `toolset` takes
names, looked up in what the user's files define.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mcp.types import CONNECTION_CLOSED, INVALID_PARAMS, Tool

from hearth.core.config import Settings
from hearth.core.errors import InvalidRequest, Unavailable
from hearth.mcp import config as mcp_config
from hearth.mcp.hosts import (
    CallOutcome,
    McpCallError,
    McpHosts,
    McpUnavailable,
    ServerStatus,
    describe,
)

log = logging.getLogger("hearth.mcp")

#: Seconds between checks that the configuration files are unchanged.
RECHECK = 2.0
#: The longest tool description a model is shown (Jan's `normalizeTools` cut).
DESCRIPTION_CHARS = 1024
#: Functions one request may offer from MCP servers (a context is the real bound).
MAX_MCP_TOOLS = 128
#: Between a server's name and its tool's, when two servers offer tools of one name.
JOIN = "__"


@dataclass(frozen=True)
class McpFunction:
    """A tool as a model sees it (`name`) and where it runs (`server`, `tool`)."""

    name: str
    server: str
    tool: str
    description: str
    parameters: dict[str, Any]

    def chat_tool(self) -> dict[str, Any]:
        """OpenAI's chat-completions function tool, as Jan sends MCP tools."""
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": self.parameters}}


@dataclass(frozen=True)
class ServerPick:
    """A server a request names, and the tools it allows (None: every tool)."""

    server: str
    allowed: frozenset[str] | None = None


@dataclass
class Toolset:
    """The MCP functions one request offers its model, by the name the model calls."""

    functions: dict[str, McpFunction] = field(default_factory=dict)
    listed: dict[str, list[Tool]] = field(default_factory=dict)  # per server, as it answered

    def chat_tools(self) -> list[dict[str, Any]]:
        return [function.chat_tool() for function in self.functions.values()]

    def get(self, name: str) -> McpFunction | None:
        return self.functions.get(name)


def _parameters(tool: Tool) -> dict[str, Any]:
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    return schema if schema.get("type") == "object" else {"type": "object", "properties": {}}


def _offered(tools: dict[str, list[Tool]], picks: list[ServerPick]) -> dict[str, McpFunction]:
    """The picked tools under the names the model will call: a tool's own name (as Jan offers
    them) unless two servers share it, then `<server>__<tool>`."""
    chosen = [
        (pick.server, tool)
        for pick in picks
        for tool in tools[pick.server]
        if pick.allowed is None or tool.name in pick.allowed
    ]
    counts: dict[str, int] = {}
    for _, tool in chosen:
        counts[tool.name] = counts.get(tool.name, 0) + 1
    functions: dict[str, McpFunction] = {}
    for server, tool in chosen:
        name = tool.name if counts[tool.name] == 1 else f"{server}{JOIN}{tool.name}"
        description = (tool.description or tool.title or tool.name)[:DESCRIPTION_CHARS]
        functions[name] = McpFunction(name, server, tool.name, description, _parameters(tool))
    return functions


class ServerDown(Exception):
    """A named server that could not start (or list its tools): which, and why."""

    def __init__(self, server: str, error: McpUnavailable) -> None:
        super().__init__(str(error))
        self.server = server


async def list_servers(hosts: McpHosts, names: list[str]) -> dict[str, list[Tool]]:
    """Every named server's tools, the servers started together (N slow servers cost one
    connect timeout, not N); `ServerDown` for the first of them, in the order named, that
    failed, as starting them one by one would have told it. One not configured or turned
    off fails before any starts."""
    for name in names:
        try:
            hosts.host(name).check_on()
        except McpUnavailable as exc:
            raise ServerDown(name, exc) from None
    answers = await asyncio.gather(*(hosts.list_tools(name) for name in names),
                                   return_exceptions=True)  # fmt: skip
    listed: dict[str, list[Tool]] = {}
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, McpUnavailable):
            raise ServerDown(name, answer)
        if isinstance(answer, BaseException):
            raise answer
        listed[name] = answer
    return listed


def missing_tool(server: str, allowed: frozenset[str] | None, tools: list[Tool]) -> str | None:
    """What is wrong when a request allows a tool its server does not have (else None)."""
    names = {tool.name for tool in tools}
    unknown = sorted((allowed or frozenset()) - names)
    if not unknown:
        return None
    return (
        f"MCP server {server!r} has no tool {unknown[0]!r}; its tools: "
        f"{', '.join(sorted(names)) or 'none'}."
    )


def offer(listed: dict[str, list[Tool]], picks: list[ServerPick], param: str) -> Toolset:
    """The picked servers' tools (already listed) as a request's toolset, bounded."""
    functions = _offered(listed, picks)
    if len(functions) > MAX_MCP_TOOLS:
        raise InvalidRequest(
            f"The MCP servers named offer {len(functions)} tools; at most {MAX_MCP_TOOLS} "
            "may be offered at once. Name fewer with `allowed_tools`.",
            param=param,
        )
    return Toolset(functions, dict(listed))


def status_view(status: ServerStatus, source: str) -> dict[str, Any]:
    """One server in `GET /v1/mcp/servers`."""
    tools = None
    if status.tools is not None:
        tools = [
            {"name": t.name, "description": t.description or "", "input_schema": _parameters(t)}
            for t in status.tools
        ]
    return {
        "name": status.name,
        "object": "mcp.server",
        "state": status.state,
        "transport": status.transport,
        "source": source,
        "tools": tools,
        "last_error": status.last_error,
        "restarts": status.restarts,
        "stderr_tail": status.stderr_tail,
    }


class McpService:
    """The configured servers, read on first use and kept in step with their files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts: McpHosts | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()
        self._closed = False  # after `aclose`: no server starts again

    def _stat(self) -> tuple[Any, ...]:
        marks: list[Any] = []
        for path in mcp_config.config_paths(self.settings):
            try:
                info = path.stat()
                marks.append((str(path), info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                marks.append((str(path), None))
        return tuple(marks)

    async def hosts(self) -> McpHosts:
        """The servers as the files define them now (re-read when a file changed); after
        `aclose` a 503: a late request must not start servers nothing would stop."""
        async with self._lock:
            if self._closed:
                raise Unavailable(
                    "Hearth is stopping: MCP servers do not start any more. Send the request "
                    "again once Hearth runs."
                )
            if self._hosts is not None and time.monotonic() - self._checked < RECHECK:
                return self._hosts
            self._checked = time.monotonic()
            fingerprint = await asyncio.to_thread(self._stat)
            if self._hosts is not None and fingerprint == self._fingerprint:
                return self._hosts
            config = await asyncio.to_thread(mcp_config.load, self.settings)
            fresh = McpHosts(config)
            stale = fresh.adopt(self._hosts) if self._hosts is not None else []
            self._hosts, self._fingerprint = fresh, fingerprint
            for problem in config.problems:
                log.warning("mcp: %s", problem.message)
        await asyncio.gather(*(host.stop() for host in stale))
        return fresh

    async def servers(self, *, start: bool = True) -> dict[str, Any]:
        """Every configured server (started, to list its tools, unless `start` is false or it
        failed and waits out its restart delay) and every entry that could not be read."""
        hosts = await self.hosts()
        if start:
            # a failed server inside its restart delay is shown failed, not waited for
            active = [host for host in hosts if host.config.active and not host.backing_off()]
            await asyncio.gather(*(self._try_list(host.name, hosts) for host in active))
        data = [status_view(host.status(), str(host.config.source)) for host in hosts]
        problems = [
            {"name": p.name or None, "source": str(p.source), "message": p.message}
            for p in hosts.config.problems
        ]
        files = await asyncio.to_thread(mcp_config.config_files, self.settings)
        return {"object": "list", "data": data, "problems": problems, "files": files}

    async def _try_list(self, name: str, hosts: McpHosts) -> None:
        try:
            await hosts.list_tools(name)
        except Exception as exc:  # its status shows the error; the others go on
            log.debug("mcp %s: %s", name, describe(exc))

    async def toolset(self, picks: list[ServerPick], param: str = "tools") -> Toolset:
        """The functions the picked servers offer, each server started if need be. A server
        that is not configured, or cannot start, is a 400 naming it and the fix."""
        hosts = await self.hosts()
        try:
            listed = await list_servers(hosts, [pick.server for pick in picks])
        except ServerDown as exc:
            raise InvalidRequest(f"{exc}. See `GET /v1/mcp/servers`.", param=param) from None
        for pick in picks:
            missing = missing_tool(pick.server, pick.allowed, listed[pick.server])
            if missing is not None:
                raise InvalidRequest(missing, param=param)
        return offer(listed, picks, param)

    async def call(self, function: McpFunction, arguments: str, request: str) -> CallOutcome:
        """Run one call the model made. Arguments that are not a JSON object, a server gone and
        a call that fails or times out all become an error result the model (and the user) can
        read: a tool's failure is part of the conversation, never a failed request. Those that
        got no result from the tool carry a JSON-RPC `code` (the Responses API's
        `mcp_protocol_error`)."""
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            text = f"Error calling tool {function.tool}: its arguments must be a JSON object."
            return CallOutcome(
                function.server, function.tool, text, True, False, len(text), code=INVALID_PARAMS
            )
        try:
            hosts = await self.hosts()
            return await hosts.call_tool(function.server, function.tool, parsed, request=request)
        except Exception as exc:  # McpUnavailable, McpCallError, stopping: the tool failed
            text = f"Error calling tool {function.tool}: {exc}"
            code = exc.code if isinstance(exc, McpCallError) else CONNECTION_CLOSED
            return CallOutcome(
                function.server, function.tool, text, True, False, len(text), code=code
            )

    async def aclose(self) -> None:
        """Stop every server (the app's shutdown); none starts after."""
        async with self._lock:
            self._closed = True
            hosts, self._hosts = self._hosts, None
        if hosts is not None:
            await hosts.aclose()
