"""A stdio MCP server for the Responses MCP loop's tests (tests/test_responses_mcp.py), written
with the official SDK. Unlike tests/support/mcp_server.py, what its tools do does not depend on
the arguments a model writes (each takes a string of at most 8 characters, which the engine's
grammar holds a model to): `stall` always hangs, `big` always answers 300,000 characters.
`note` and `stall` append a line to the file named by $HEARTH_TEST_CALLS, so a test can tell
which calls the server saw (and that a refused or unapproved one never came).
"""

from __future__ import annotations

import json
import os
import time
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

mcp = MCPServer("hearth-loop-test")
#: A short string: the engine's grammar keeps a model's argument to a few characters.
Short = Annotated[str, Field(max_length=8)]


def _record(tool: str, arguments: dict[str, object]) -> None:
    path = os.environ.get("HEARTH_TEST_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as calls:
            calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@mcp.tool()
def note(text: Short) -> str:
    """Write a note down."""
    _record("note", {"text": text})
    return f"noted: {text}"


@mcp.tool()
def stall(text: Short) -> str:
    """Take a very long time to answer."""
    _record("stall", {"text": text})
    time.sleep(600)
    return "woke"


@mcp.tool()
def big(text: Short) -> str:
    """A very long answer."""
    return "y" * 300_000


if __name__ == "__main__":
    mcp.run()
