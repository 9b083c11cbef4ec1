"""A tiny stdio MCP server for Hearth's MCP tests, written with the official SDK.

Its tools answer, fail, hang, crash the process, flood stderr, return a huge result, and
start a child process that outlives the server (to check that Hearth leaves no orphans).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

mcp = MCPServer("hearth-test")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@mcp.tool()
def fail(msg: str) -> str:
    """Fail as a tool does (is_error), not as the protocol does."""
    raise ToolError(msg)


@mcp.tool()
def hang(seconds: float) -> str:
    """Sleep longer than any test's call timeout."""
    time.sleep(seconds)
    return "woke"


@mcp.tool()
def crash() -> str:
    """Die mid-call, as a buggy server does."""
    os._exit(3)


@mcp.tool()
def huge(n: int) -> str:
    """A result of `n` characters."""
    return "x" * n


@mcp.tool()
def noisy(lines: int) -> str:
    """Write `lines` lines to stderr, then answer."""
    for i in range(lines):
        print(f"noise {i}", file=sys.stderr)
    sys.stderr.flush()
    return "done"


@mcp.tool()
def spawn() -> int:
    """Start a child that sleeps for ten minutes; its pid."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    return child.pid


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("streamable-http", "sse"):  # <transport> <port>
        mcp.run(transport=sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]))  # type: ignore[call-overload]
    else:
        mcp.run()
