"""`hearth mcp ...`: the user's MCP servers outside conversations (issue 26).

`ls` asks the home's running server when there is one (`GET /v1/mcp/servers`), so the states are
the live ones; with no server it reads the same files through the same service, starts the
active servers to list their tools and stops them before it returns. `path` says which files
define servers and where to write one. `call` runs one tool once, for debugging a server: it
always starts the server in this command (no API runs a tool outside a conversation or a
response) and stops it after.

Only what the command needs is imported when it runs: with a server, `ls` loads the small HTTP
client and nothing of the SDK, the settings or pydantic (tests/test_cli_mcp.py checks it).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hearth.cli.common import UsageError, address_from, command, fail, settings_from

if TYPE_CHECKING:
    from hearth.core.config import Settings
    from hearth.mcp.hosts import CallOutcome

#: A server that must start to list its tools takes at most its connect timeout (20 s).
LIST_TIMEOUT = 120.0
STATE_STYLE = {"running": "green", "starting": "yellow", "failed": "red", "inactive": "dim"}
STDERR_SHOWN = 5

#: Claude Desktop's format: a stdio server (`command`, `args`, `env`) and a remote one (`url`).
EXAMPLE = """{
  "mcpServers": {
    "time": {"command": "uvx", "args": ["mcp-server-time"]},
    "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer <key>"}}
  }
}"""


def listing(args: argparse.Namespace, start: bool) -> dict[str, Any]:
    """`GET /v1/mcp/servers`'s answer: from the home's running server, else from this process
    (servers it started to list their tools are stopped before it returns)."""
    from hearth.cli.backend import server_for

    remote = server_for(address_from(args))
    if remote is not None:
        with remote:
            params = {"start": start}
            return remote.request_object(
                "GET", "/v1/mcp/servers", params=params, timeout=LIST_TIMEOUT
            )
    import asyncio

    return asyncio.run(_local_listing(settings_from(args), start))


async def _local_listing(settings: Settings, start: bool) -> dict[str, Any]:
    from hearth.services.mcp import McpService

    _quiet()
    service = McpService(settings)
    try:
        return await service.servers(start=start)
    finally:
        await service.aclose()


def _quiet() -> None:
    """The service logs each failure and config problem; the listing shows them already."""
    import logging

    logging.getLogger("hearth.mcp").setLevel(logging.ERROR)


def list_servers(args: argparse.Namespace) -> None:
    """List MCP servers: transport, state, tools, last error, and the config's problems.

    Asks the home's running server when there is one; otherwise starts the active servers here
    to list their tools, and stops them after (--no-start: only read the files)."""
    from hearth.cli.output import echo

    answer = listing(args, args.start)
    if args.as_json:
        echo(json.dumps(answer, indent=2))
        return
    print_listing(answer)


def print_listing(answer: dict[str, Any]) -> None:
    """The table, each server's tools and error, the problems, then where servers come from."""
    from hearth.cli.output import Table, clean, echo, paint

    servers = [s for s in answer.get("data", []) if isinstance(s, dict)]
    problems = [p for p in answer.get("problems", []) if isinstance(p, dict)]
    if servers:
        table = Table("NAME", "TRANSPORT", "STATE", "TOOLS", right=["TOOLS"])
        for server in servers:
            tools = server.get("tools")
            state = str(server.get("state", ""))
            count = "-" if not isinstance(tools, list) else str(len(tools))
            styles = [None, None, STATE_STYLE.get(state), None]
            table.add_row(str(server.get("name")), str(server.get("transport")), state, count,
                          styles=styles)  # fmt: skip
        table.print()
        echo()
        for server in servers:
            _details(server)
    for problem in problems:
        echo(f"{paint('problem', 'red')} {clean(problem.get('message'), 4000)}")
    files = answer.get("files") or []
    if not servers and not problems:
        echo("No MCP servers are configured.")
        print_how_to(files)
    else:
        print_files(files)


def _details(server: dict[str, Any]) -> None:
    from hearth.cli.output import clean, echo, paint

    name = clean(server.get("name"), 200)
    tools = server.get("tools")
    if isinstance(tools, list) and tools:
        names = ", ".join(str(t.get("name")) for t in tools if isinstance(t, dict))
        echo(f"{paint(name, 'bold')} tools: {clean(names, 2000)}")
    if server.get("last_error"):
        echo(f"{paint(name, 'red')} error: {clean(server['last_error'], 2000)}")
        for line in (server.get("stderr_tail") or [])[-STDERR_SHOWN:]:
            echo(f"    stderr: {clean(line, 300)}")


def print_files(files: list[dict[str, Any]]) -> None:
    """Which files define servers (Hearth's own first: it wins a name clash)."""
    from hearth.cli.output import clean, echo

    for item in files:
        path = clean(item.get("path"), 1000)
        absent = "" if item.get("exists") else ", not created yet"
        if item.get("kind") == "hearth":
            echo(f"Servers: {path} (Hearth's file: add yours here{absent})")
        else:
            echo(f"Servers: {path} (Jan's file, read too; Hearth's wins a name clash{absent})")


def print_how_to(files: list[dict[str, Any]]) -> None:
    """The files, then an example in the `mcpServers` format Claude Desktop, Cursor and Jan use."""
    from hearth.cli.output import echo

    print_files(files)
    echo()
    echo("Write the `mcpServers` block from Claude Desktop, Cursor or Jan into Hearth's file;")
    echo("stdio servers take `command`, `args`, `env`; remote ones `url` and `headers`:")
    echo(EXAMPLE)


def show_path(args: argparse.Namespace) -> None:
    """Say which files define MCP servers, and where to write one (with an example)."""
    from hearth.mcp.config import config_files

    print_how_to(config_files(settings_from(args)))


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the arguments are not JSON ({exc}); e.g. '{{\"a\": 2}}'") from None
    if not isinstance(value, dict):
        raise UsageError("the arguments must be a JSON object, e.g. '{\"a\": 2}'")
    return value


def call(args: argparse.Namespace) -> int:
    """Run one tool of an MCP server once and print its result (for debugging a server).

    e.g. hearth mcp call time get_current_time '{"timezone": "Europe/Paris"}'
    The server is started by this command (even when `hearth serve` runs) and stopped after.
    The result is the text a model would read, cut at 100,000 characters as Hearth cuts it.
    """
    import asyncio

    from hearth.cli.output import clean_text, echo

    arguments = _arguments(args.arguments)
    outcome = asyncio.run(_call_once(settings_from(args), args.server, args.tool, arguments))
    if args.as_json:
        echo(json.dumps(_outcome_json(outcome), indent=2))
        return 1 if outcome.is_error else 0
    if outcome.is_error:
        raise fail(f"tool {args.tool!r} answered with an error: {outcome.text}")
    echo(clean_text(outcome.text))
    return 0


async def _call_once(settings: Settings, server: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Start the server, check it has the tool, call it, stop the server."""
    import asyncio

    from hearth.core.errors import HearthError
    from hearth.mcp import config as mcp_config
    from hearth.mcp.hosts import McpCallError, McpHosts, McpUnavailable

    _quiet()
    hosts = McpHosts(await asyncio.to_thread(mcp_config.load, settings))
    try:
        names = [t.name for t in await hosts.list_tools(server)]
        if tool not in names:
            listed = ", ".join(names) or "none"
            raise HearthError(f"MCP server {server!r} has no tool {tool!r}; its tools: {listed}")
        return await hosts.call_tool(server, tool, arguments, request="hearth mcp call")
    except (McpUnavailable, McpCallError) as exc:
        raise HearthError(str(exc)) from None
    finally:
        await hosts.aclose()


def _outcome_json(outcome: CallOutcome) -> dict[str, Any]:
    result = outcome.result
    dumped = (
        None if result is None else result.model_dump(by_alias=True, mode="json", exclude_none=True)
    )
    return {
        "server": outcome.server,
        "tool": outcome.tool,
        "is_error": outcome.is_error,
        "cut": outcome.cut,
        "chars": outcome.full_chars,
        "text": outcome.text,
        "result": dumped,
    }


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """The `hearth mcp` group: ls (alias list), path, call."""
    group: argparse.ArgumentParser = sub.add_parser(
        "mcp",
        help="See and try the MCP servers (tools) you configured",
        description="See and try the MCP servers you configured in mcp.json "
        "(`hearth mcp path` says where it is).",
        parents=[common],
    )
    group.set_defaults(help_of=group)
    verbs = group.add_subparsers(title="commands", metavar="COMMAND")
    listing_parser = command(verbs, "ls", list_servers, parents=[common], aliases=["list"])
    listing_parser.add_argument(
        "--json", dest="as_json", action="store_true", help="print the API's JSON, not a table"
    )
    listing_parser.add_argument(
        "--start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the active servers to list their tools (default); --no-start: state only",
    )
    command(verbs, "path", show_path, parents=[common])
    calling = command(verbs, "call", call, parents=[common])
    calling.add_argument("server", metavar="SERVER")
    calling.add_argument("tool", metavar="TOOL")
    calling.add_argument(
        "arguments", metavar="JSON", nargs="?", default="{}", help="the tool's arguments"
    )
    calling.add_argument(
        "--json", dest="as_json", action="store_true", help="print the whole result as JSON"
    )
