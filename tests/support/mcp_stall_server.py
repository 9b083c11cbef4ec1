"""An MCP server (the official SDK, stdio) whose one tool never answers in time: for the thread
runs' tests of a call that times out and of a client that leaves while a call runs."""

from __future__ import annotations

import time

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("hearth-stall")


@mcp.tool()
def stall() -> str:
    """Wait ten minutes, then answer."""
    time.sleep(600)
    return "woke"


if __name__ == "__main__":
    mcp.run()
