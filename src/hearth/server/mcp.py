"""`GET /v1/mcp/servers`: the user's MCP servers, their state, tools and last error (issue 26).

Listing a server's tools is a use of it: the active servers are started (in parallel, each
bounded by its connect timeout) unless `?start=false` asks for the state alone. A server that
cannot start shows its error and the tail of its stderr; the others are listed as usual. The
entries Hearth could not read are under `problems`, each naming its file and the fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from hearth.server.respond import services_of
from hearth.server.schemas import ERRORS

router = APIRouter(prefix="/v1/mcp", tags=["mcp"])


@router.get("/servers", responses=ERRORS)
async def servers(
    request: Request,
    start: bool = Query(True, description="Start the active servers to list their tools."),
) -> dict[str, Any]:
    """Every MCP server from the user's `mcp.json` (and Jan's `mcp_config.json` in a Jan data
    folder): `state` (stopped, starting, running, failed, inactive), `transport`, `source` (the
    file), `tools` (null until it has started), `last_error`, `restarts`, `stderr_tail`;
    `problems`: entries that could not be read; and `files`: the files that may define servers
    (`kind` "hearth" is where to write one), whether each exists."""
    return await services_of(request).mcp.servers(start=start)
