"""A Responses request's `tools` and `tool_choice`, read into what the engine can take.

Agents send more than flat function tools. Codex CLI (0.17x) sends a `namespace` tool wrapping
function tools (its sub-agent tools) and OpenAI's hosted `web_search`, on every request:

- A namespace's functions are offered to the model flattened, each named `<namespace>__<name>`
  (the flat name Codex itself uses where a namespace cannot be kept: its `ToolName::
  canonical_flat_name`, one stray underscore trimmed on each side of the `__`). A call the model
  makes goes back as OpenAI writes it: `name` the function's own name and `namespace` beside it
  (`Names.outward`), and a `function_call` item sent back with a `namespace` is read under the
  flat name again (`flat_name`).
- Tools OpenAI's servers run (`HOSTED`) and built-in tools whose calls are item types a chat
  model cannot write here (`NOT_WRITABLE`: `local_shell_call`, `shell_call`, `apply_patch_call`,
  `custom_tool_call`) are left out of what the model sees and the request goes on; their types
  are named in the answer's `x-hearth-tools-left-out` header and logged (`Tools.left_out`), so a
  caller can tell an answer made without them.
- `{"type": "mcp"}` tools name the user's configured MCP servers (`mcp_request.py`); Hearth
  runs their calls itself (`mcp_run.py`). A request without one goes the path it always went.
- Anything else (an unknown type, a malformed function, a namespace inside a namespace, two
  tools the model would know by one name) is still a 400 naming the tool and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.server.responses import mcp_request
from hearth.server.responses.mcp_request import McpChoice, McpTool

MAX_TOOLS = 128  # functions the model sees, namespaces flattened
HOSTED = frozenset({
    "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
    "file_search", "code_interpreter", "image_generation", "tool_search",
    "programmatic_tool_calling", "computer_use_preview", "computer",
})  # fmt: skip
NOT_WRITABLE = frozenset({"local_shell", "shell", "apply_patch", "custom"})
FLAT = "__"  # between a namespace and its function's name, as Codex joins them
LEFT_OUT_HEADER = "x-hearth-tools-left-out"


def _bad(message: str, param: str) -> InvalidParameter:
    return InvalidParameter(message, param=param)


def _str(value: Any, param: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _bad(f"'{param}' must be a {'' if empty else 'non-empty '}string.", param)
    return value


def flat_name(namespace: str | None, name: str) -> str:
    """The name the model knows a (namespaced) function by."""
    if not namespace:
        return name
    return f"{namespace.removesuffix('_')}{FLAT}{name.removeprefix('_')}"


@dataclass
class Names:
    """Flat name -> (the function's own name, its namespace) for namespaced functions."""

    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)

    def outward(self, flat: str) -> tuple[str, str | None]:
        """(name, namespace) of a call the model made, as the client defined the tool."""
        return self.namespaced.get(flat, (flat, None))


@dataclass
class Tools:
    """The request's tools as the engine takes them, and what the Response echoes."""

    chat: list[dict[str, Any]]  # chat-completions tools, in the request's order
    choice: Any  # the chat tool_choice (None: not given)
    names: Names
    echo: list[dict[str, Any]]  # the tools the model saw, in the Responses shape
    left_out: list[str]  # types left out (each once, in order)
    every: list[dict[str, Any]] = field(default_factory=list)  # all the client's functions
    mcp: list[McpTool] = field(default_factory=list)  # the user's MCP servers named
    mcp_choice: McpChoice | None = None  # tool_choice {"type": "mcp"}


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A flat Responses function tool -> the chat `function` object."""
    function: dict[str, Any] = {"name": _str(tool.get("name"), f"{where}.name", empty=False)}
    if tool.get("description") is not None:
        function["description"] = _str(tool["description"], f"{where}.description")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad("A tool's 'parameters' must be a JSON schema object.", f"{where}.parameters")
    function["parameters"] = parameters or {"type": "object", "properties": {}}
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise _bad("'strict' must be true or false.", f"{where}.strict")
        function["strict"] = strict
    return function


def _unsupported(kind: Any, where: str) -> InvalidParameter:
    return _bad(
        f"Unsupported tool type {json.dumps(kind)[:60]}: Hearth runs function tools (and "
        "namespaces of them); OpenAI's hosted tools are left out of what the model sees.",
        where,
    )


class _Reader:
    """Collects the functions the model sees, refusing two under one name."""

    def __init__(self) -> None:
        self.functions: list[dict[str, Any]] = []
        self.names = Names()
        self.echo: list[dict[str, Any]] = []
        self.left_out: list[str] = []
        self.mcp: list[McpTool] = []
        self._seen: set[str] = set()

    def add(self, function: dict[str, Any], where: str, namespace: str | None = None) -> None:
        own = function["name"]
        flat = flat_name(namespace, own)
        if flat in self._seen:
            raise _bad(f"Two tools are both named '{flat[:64]}': give each a name of its own.",
                       where)  # fmt: skip
        self._seen.add(flat)
        if namespace:
            self.names.namespaced[flat] = (own, namespace)
        self.functions.append({**function, "name": flat})

    def leave_out(self, kind: str) -> None:
        if kind not in self.left_out:
            self.left_out.append(kind)

    def tool(self, tool: Any, where: str) -> None:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict):
            raise _bad("Each tool must be an object with a 'type'.", where)
        if kind == "function":
            function = _function(tool, where)
            self.add(function, where)
            self.echo.append({"type": "function", "strict": False, **function})
        elif kind == "namespace":
            self.namespace(tool, where)
        elif kind == "mcp":
            server = mcp_request.read_tool(tool, where)
            self.mcp.append(server)
            self.echo.append(server.echo())
        elif kind in HOSTED or kind in NOT_WRITABLE:
            self.leave_out(str(kind))
        else:
            raise _unsupported(kind, f"{where}.type")

    def namespace(self, tool: dict[str, Any], where: str) -> None:
        name = _str(tool.get("name"), f"{where}.name", empty=False)
        description = tool.get("description")
        members = tool.get("tools")
        if not isinstance(members, list) or not members:
            raise _bad("A namespace's 'tools' must be a non-empty list of function tools.",
                       f"{where}.tools")  # fmt: skip
        kept = []
        for i, member in enumerate(members):
            inner = f"{where}.tools[{i}]"
            kind = member.get("type") if isinstance(member, dict) else None
            if kind == "function":
                function = _function(member, inner)
                self.add(function, inner, namespace=name)
                kept.append({"type": "function", "strict": False, **function})
            elif kind in NOT_WRITABLE:
                self.leave_out(str(kind))
            else:
                raise _bad("A namespace holds function tools only.", f"{inner}.type")
        if kept:
            text = "" if description is None else _str(description, f"{where}.description")
            self.echo.append({"type": "namespace", "name": name, "description": text,
                              "tools": kept})  # fmt: skip


def _choice(given: Any, functions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    """(the functions offered, the chat tool_choice): a named function becomes "required"
    of that one function (llama.cpp takes tool_choice as a string only)."""
    if given is None or given in ("auto", "none", "required"):
        return functions, given
    if isinstance(given, dict) and given.get("type") == "function":
        name = _str(given.get("name"), "tool_choice.name", empty=False)
        namespace = given.get("namespace")
        flat = flat_name(namespace if isinstance(namespace, str) else None, name)
        chosen = [f for f in functions if f["name"] == flat]
        if not chosen:
            raise _bad(f"tool_choice names '{flat[:64]}', which is not in 'tools'.",
                       "tool_choice")  # fmt: skip
        return chosen, "required"
    raise _bad(
        '\'tool_choice\' must be "auto", "none", "required", '
        '{"type": "function", "name": "..."} or {"type": "mcp", "server_label": "..."}.',
        "tool_choice",
    )


def read(body: dict[str, Any]) -> Tools:
    """The request's `tools` and `tool_choice` (see the module docstring)."""
    given = body.get("tools") or []
    if not isinstance(given, list) or len(given) > MAX_TOOLS:
        raise _bad(f"'tools' must be a list of at most {MAX_TOOLS} tools.", "tools")
    reader = _Reader()
    for i, tool in enumerate(given):
        reader.tool(tool, f"tools[{i}]")
    if len(reader.functions) > MAX_TOOLS:
        raise _bad(f"'tools' may offer at most {MAX_TOOLS} functions, namespaces counted "
                   "function by function.", "tools")  # fmt: skip
    mcp_request.check_servers(reader.mcp)
    given_choice = body.get("tool_choice")
    mcp_choice = None
    if isinstance(given_choice, dict) and given_choice.get("type") == "mcp" and reader.mcp:
        mcp_choice = mcp_request.read_choice(given_choice, reader.mcp)
        functions, choice = reader.functions, None  # forced once the server's tools are known
    else:
        functions, choice = _choice(given_choice, reader.functions)
    chat = [{"type": "function", "function": f} for f in functions]
    every = [{"type": "function", "function": f} for f in reader.functions]
    return Tools(chat, choice, reader.names, reader.echo, reader.left_out, every, reader.mcp,
                 mcp_choice)  # fmt: skip
