"""Hearth as an MCP host: the user's configured servers (config), their processes and sessions
(hosts), a tool result as text for a model (results), secrets kept out of error text (redact).
Beside `engines`; `services` uses it. What is here loads no SDK: faces name it freely."""

from __future__ import annotations

from typing import Any

from hearth.core.errors import InvalidParameter

#: Tool names in one list (a server offers far fewer; the bound keeps a body's cost small).
MAX_NAMES = 256

#: What a model reads for a call the user refused: Jan's own words, so a conversation reads the
#: same in Jan (here, not in a submodule, so a face can name it without loading the SDK).
DENIED = "The user has chosen to disallow the tool call."


def tool_names(value: Any, param: str) -> frozenset[str]:
    """A request's list of a server's tool names (`allowed_tools`, `tools_off`), checked:
    one reading for the Responses face and a conversation's run."""
    ok = isinstance(value, list) and len(value) <= MAX_NAMES
    if not ok or not all(isinstance(n, str) and 0 < len(n) <= 128 for n in value):
        raise InvalidParameter(f"'{param}' must be a list of at most {MAX_NAMES} tool names.",
                               param=param)  # fmt: skip
    return frozenset(value)
