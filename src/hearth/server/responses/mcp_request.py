"""A Responses request's `{"type": "mcp"}` tools and `{"type": "mcp"}` tool_choice, read (issue 26,
point 3). Pure: no I/O, no `mcp` SDK (a request without MCP tools never loads it).

OpenAI's shape (docs/research/mcp.md §3), with one difference that is the trust boundary:
`server_label` names a server the user configured in their own mcp.json, and nothing else. A
request that carries `server_url`, `connector_id`, `tunnel_id`, `headers` or `authorization` is
a 400 naming the field: a request can never start or reach a server the user did not configure,
nor send the user's secrets anywhere. Whether the label is configured is checked when the
request runs (`mcp_run.py`), against the files as they are then.

`allowed_tools` is a list of names or a filter `{"tool_names": [...], "read_only": bool}`;
`require_approval` is "always", "never" or `{"always": filter, "never": filter}`; a missing
`require_approval` means "always" (OpenAI's default: a tool result is a stranger's text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.mcp import tool_names

#: Fields of OpenAI's mcp tool that would point a request at a server, or carry credentials.
REFUSED = ("server_url", "connector_id", "tunnel_id", "headers", "authorization")
WHERE_FROM = (
    "Hearth runs only the MCP servers the user configured in mcp.json (GET /v1/mcp/servers "
    "lists them): name one with 'server_label'. A request cannot name a server's address, "
    "connector, tunnel, headers or credentials; remove '{field}'."
)


def _bad(message: str, param: str) -> InvalidParameter:
    return InvalidParameter(message, param=param)


@dataclass(frozen=True)
class Filter:
    """OpenAI's McpToolFilter: a tool matches when every criterion given matches it."""

    names: frozenset[str] | None = None
    read_only: bool | None = None

    def matches(self, tool: str, read_only: bool) -> bool:
        if self.names is not None and tool not in self.names:
            return False
        return self.read_only is None or self.read_only == read_only

    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.names is not None:
            out["tool_names"] = sorted(self.names)
        if self.read_only is not None:
            out["read_only"] = self.read_only
        return out


@dataclass(frozen=True)
class Approval:
    """When a call waits for the user's approval (`require_approval`)."""

    mode: str = "always"  # "always" | "never" | "filters"
    always: Filter | None = None
    never: Filter | None = None

    def needed(self, tool: str, read_only: bool) -> bool:
        """A tool named by neither filter asks, as a missing `require_approval` does."""
        if self.mode != "filters":
            return self.mode == "always"
        if self.always is not None and self.always.matches(tool, read_only):
            return True
        return not (self.never is not None and self.never.matches(tool, read_only))

    def echo(self) -> Any:
        if self.mode != "filters":
            return self.mode
        both = {"always": self.always, "never": self.never}
        return {key: value.echo() for key, value in both.items() if value is not None}


@dataclass(frozen=True)
class McpTool:
    """One `{"type": "mcp"}` tool of a request."""

    server: str
    where: str  # "tools[2]", for errors
    allowed: Filter | None
    approval: Approval

    def echo(self) -> dict[str, Any]:
        """The tool as a Response repeats it (validated fields only)."""
        return {
            "type": "mcp",
            "server_label": self.server,
            "allowed_tools": self.allowed.echo() if self.allowed is not None else None,
            "require_approval": self.approval.echo(),
        }


@dataclass(frozen=True)
class McpChoice:
    """`tool_choice: {"type": "mcp", "server_label": ..., "name"?: ...}`."""

    server: str
    name: str | None


def _label(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise _bad(
            "'server_label' must name an MCP server configured in mcp.json (GET "
            "/v1/mcp/servers lists them).",
            param,
        )
    return value


def _filter(value: Any, param: str) -> Filter:
    """A list of names, or `{"tool_names": [...], "read_only": bool}` (at least one)."""
    if isinstance(value, list):
        return Filter(tool_names(value, param))
    if not isinstance(value, dict):
        raise _bad(
            f"'{param}' must be a list of tool names or "
            '{"tool_names": [...], "read_only": true|false}.',
            param,
        )
    names = value.get("tool_names")
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise _bad(f"'{param}.read_only' must be true or false.", f"{param}.read_only")
    if names is None and read_only is None:
        raise _bad(f"'{param}' must give 'tool_names', 'read_only' or both.", param)
    return Filter(None if names is None else tool_names(names, f"{param}.tool_names"), read_only)


def _approval(value: Any, param: str) -> Approval:
    if value is None:
        return Approval("always")
    if value in ("always", "never"):
        return Approval(str(value))
    if isinstance(value, dict) and value and set(value) <= {"always", "never"}:
        always, never = value.get("always"), value.get("never")
        return Approval(
            "filters",
            None if always is None else _filter(always, f"{param}.always"),
            None if never is None else _filter(never, f"{param}.never"),
        )
    raise _bad(
        f'\'{param}\' must be "always", "never" or '
        '{"always": {"tool_names": [...]}, "never": {"tool_names": [...]}}.',
        param,
    )


def read_tool(tool: dict[str, Any], where: str) -> McpTool:
    """One `{"type": "mcp"}` tool (see the module docstring)."""
    for field in REFUSED:
        if tool.get(field) is not None:
            raise _bad(WHERE_FROM.format(field=field), f"{where}.{field}")
    server = _label(tool.get("server_label"), f"{where}.server_label")
    given = tool.get("allowed_tools")
    allowed = None if given is None else _filter(given, f"{where}.allowed_tools")
    approval = _approval(tool.get("require_approval"), f"{where}.require_approval")
    return McpTool(server, where, allowed, approval)


def read_choice(given: dict[str, Any], servers: list[McpTool]) -> McpChoice:
    """`tool_choice: {"type": "mcp"}`: the server must be one of the request's mcp tools."""
    server = _label(given.get("server_label"), "tool_choice.server_label")
    if server not in {tool.server for tool in servers}:
        raise _bad(
            f"tool_choice names MCP server {json.dumps(server)[:80]}, which no "
            '{"type": "mcp"} tool in \'tools\' names: add it there.',
            "tool_choice.server_label",
        )
    name = given.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise _bad("'tool_choice.name' must be a tool's name.", "tool_choice.name")
    return McpChoice(server, name)


def check_servers(servers: list[McpTool]) -> None:
    """Each server once: two tools naming one server would offer its tools twice."""
    seen: set[str] = set()
    for tool in servers:
        if tool.server in seen:
            raise _bad(
                f"MCP server {json.dumps(tool.server)[:80]} is named by two tools: name each "
                "server once (put every tool it may use in one 'allowed_tools').",
                f"{tool.where}.server_label",
            )
        seen.add(tool.server)
