"""A Responses request with `{"type": "mcp"}` tools, run: Hearth is the MCP host (issue 26,
points 3 and 4). Only such a request comes here (routes.py); any other goes the path it always
went.

The loop, after OpenAI's (docs/research/mcp.md §3):

1. The named servers are checked against the user's configuration (an unconfigured or turned-off
   one is a 400 naming the configured ones; one that cannot start is a 424, as OpenAI answers
   when it cannot list a server's tools) and their tools listed: an `mcp_list_tools` item per
   server, unless the input already holds one for it.
2. Calls the input approves (`mcp_input.py`) run first.
3. The model's turn: the MCP functions and the client's own functions offered, through the
   same `open_inference` call the route always made. A call of an MCP function that needs
   approval ends the response with an `mcp_approval_request` (nothing runs); one that does not
   runs (`services.mcp.call`, the response id as the request label in the log) and the call
   and its result join the chat for the next turn. A call of the client's function goes back
   as a `function_call` item and ends the response, as ever.
4. Bounded: a forced tool_choice holds for the first turn only; at most `mcp_max_rounds`
   turns (settings) and `max_tool_calls` calls (the request's); the last turn allowed goes
   with tool_choice "none", so the answer ends in text. A client that leaves stops the loop:
   the call in flight is cancelled, no other call or turn starts.

One loop (`rounds`) writes Responses events for both forms: streamed as they come, or folded
into the final Response (`_whole`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from mcp.types import Tool

from hearth.core.errors import EngineError, HearthError, InvalidParameter, McpServerFailed
from hearth.engines.events import answer_events
from hearth.engines.proxy import Answer
from hearth.mcp.hosts import McpUnavailable
from hearth.server.respond import (
    Flow,
    checked,
    client_closed,
    services_of,
    sse,
    stream_answer,
    unless_disconnected,
)
from hearth.server.responses.mcp_pending import Pending, pending_of
from hearth.server.responses.mcp_request import McpTool
from hearth.server.responses.mcp_stream import McpEvents, call_item, outcome_item
from hearth.server.responses.shapes import Event, McpListToolsItem
from hearth.server.responses.stream import BEATS
from hearth.server.responses.translate import Call, McpPart, new_id
from hearth.services import Services
from hearth.services.mcp import (
    McpFunction,
    ServerDown,
    ServerPick,
    Toolset,
    list_servers,
    missing_tool,
    offer,
)

log = logging.getLogger("hearth.server")
NOT_RUN = "Not run: this response may run at most {n} tool calls (its max_tool_calls)."


@dataclass
class Plan:
    """One request's run: its tools, its writer, the chat so far, where the bounds stand."""

    call: Call
    part: McpPart
    toolset: Toolset
    specs: dict[str, McpTool]  # by server
    writer: McpEvents
    response_id: str
    pending: Pending
    max_rounds: int
    early: list[Event]  # written before the model's first turn
    first: Answer | None = None  # the model's first turn, opened
    round: int = 1
    calls_made: int = 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.call.body["messages"]
        return messages

    def last_round(self) -> bool:
        bound = self.part.max_tool_calls
        return self.round >= self.max_rounds or (bound is not None and self.calls_made >= bound)


def _read_only(toolset: Toolset, function: McpFunction) -> bool:
    for tool in toolset.listed.get(function.server, []):
        if tool.name == function.tool:
            return bool(tool.annotations is not None and tool.annotations.read_only_hint)
    return False


async def _check_servers(services: Services, servers: list[McpTool]) -> dict[str, list[Tool]]:
    """Every server named is configured and on (checked for all before any starts), then
    lists its tools (started together); every allowed tool is one of them. Their tools."""
    hosts = await services.mcp.hosts()
    for spec in servers:
        param = f"{spec.where}.server_label"
        try:
            host = hosts.host(spec.server)
        except McpUnavailable as exc:
            raise InvalidParameter(f"{exc}.", param=param) from None
        if not host.config.active:
            raise InvalidParameter(
                f'MCP server {spec.server!r} is turned off ("active": false in '
                f"{host.config.source.name}): turn it on there, or name another.",
                param=param,
            )
    where = {spec.server: spec.where for spec in servers}
    try:
        listed = await list_servers(hosts, [spec.server for spec in servers])
    except ServerDown as exc:
        raise McpServerFailed(
            f"Error retrieving tool list from MCP server {exc.server!r}: {exc}. "
            "GET /v1/mcp/servers shows its state and the end of its stderr.",
            param=f"{where[exc.server]}.server_label",
        ) from None
    for spec in servers:
        wanted = spec.allowed.names if spec.allowed is not None else None
        missing = missing_tool(spec.server, wanted, listed[spec.server])
        if missing is not None:
            raise InvalidParameter(missing, param=f"{spec.where}.allowed_tools")
    return listed


async def _toolset(services: Services, part: McpPart) -> Toolset:
    """The MCP functions the request offers, `allowed_tools` applied (names and read_only)."""
    listed = await _check_servers(services, part.servers)
    picks = [ServerPick(s.server, s.allowed.names if s.allowed else None) for s in part.servers]
    toolset = offer(listed, picks, "tools")
    specs = {spec.server: spec for spec in part.servers}
    for name, function in list(toolset.functions.items()):
        allowed = specs[function.server].allowed
        read_only = None if allowed is None else allowed.read_only
        if read_only is not None and _read_only(toolset, function) != read_only:
            del toolset.functions[name]
    clash = sorted(set(toolset.functions) & {t["function"]["name"] for t in part.functions})
    if clash:
        raise InvalidParameter(
            f"A function tool and an MCP server's tool are both named {clash[0]!r}: rename the "
            "function, or leave the MCP tool out with 'allowed_tools'.",
            param="tools",
        )
    return toolset


def _listing(toolset: Toolset, server: str) -> McpListToolsItem:
    """The server's tools this request offers, as an `mcp_list_tools` item."""
    offered = {f.tool for f in toolset.functions.values() if f.server == server}
    tools: list[Any] = []
    for tool in toolset.listed.get(server, []):
        if tool.name not in offered:
            continue
        schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
        entry: dict[str, Any] = {"name": tool.name, "input_schema": schema}
        if tool.description:
            entry["description"] = tool.description
        if tool.annotations is not None:
            entry["annotations"] = tool.annotations.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        tools.append(entry)
    return {"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": server,
            "tools": tools}  # fmt: skip


def _forced(plan: Plan) -> list[dict[str, Any]]:
    """The first turn's tools under tool_choice {"type": "mcp"}: that server's (or tool)."""
    choice = plan.part.choice
    assert choice is not None
    chosen = [
        f.chat_tool() for f in plan.toolset.functions.values()
        if f.server == choice.server and (choice.name is None or f.tool == choice.name)
    ]  # fmt: skip
    if not chosen:
        offered = sorted(f.tool for f in plan.toolset.functions.values()
                         if f.server == choice.server)  # fmt: skip
        raise InvalidParameter(
            f"tool_choice names tool {choice.name!r} of MCP server {choice.server!r}, which "
            f"this request does not offer; offered: {', '.join(offered) or 'none'}.",
            param="tool_choice.name",
        )
    return chosen


def _round_body(plan: Plan) -> dict[str, Any]:
    """The chat body of the model's turn (`plan.round`): which tools, which tool_choice."""
    body = plan.call.body
    every = [*plan.toolset.chat_tools(), *plan.part.functions]
    given = body.get("tool_choice")
    tools, choice = every, ("auto" if given is None or plan.round > 1 else given)
    if plan.round == 1 and plan.part.choice is not None:
        tools, choice = _forced(plan), "required"
    elif plan.round == 1 and plan.part.forced is not None:
        tools, choice = plan.part.forced, "required"
    if plan.last_round():
        choice = "none"  # the answer ends in text
    out = {**body, "stream": True, "stream_options": {"include_usage": True}}
    out.update(tools=tools, tool_choice=choice)
    out["parallel_tool_calls"] = plan.call.echo["parallel_tool_calls"]
    return out


async def _open_round(services: Services, plan: Plan) -> Answer:
    log.info("Responses %s: MCP turn %d of the model", plan.response_id, plan.round)
    body = _round_body(plan)
    answer = await services.open_inference("chat/completions", body, plan.call.keep_alive)
    return await checked(answer, plan.call.name)


async def _approved(services: Services, plan: Plan) -> list[Event]:
    """Run the calls the input approves, as many as `max_tool_calls` allows (the rest are
    `incomplete` and say why, as in `_run_turn`); their items, and results in the chat."""
    by_tool = {(f.server, f.tool): f for f in plan.toolset.functions.values()}
    chosen = []
    for decision in plan.part.items.decisions:
        request = decision.request
        assert request is not None
        function = by_tool.get((request.server, request.name))
        if function is None:
            raise InvalidParameter(
                f"This mcp_approval_response approves {request.name!r} on MCP server "
                f"{request.server!r}, which this request's tools do not offer: name the server "
                "in 'tools' (with the tool in its allowed_tools).",
                param=f"{decision.where}.approval_request_id",
            )
        chosen.append((decision, function))
    events: list[Event] = []
    bound = plan.part.max_tool_calls
    for decision, function in chosen:
        assert decision.request is not None
        item = call_item(function, decision.request.arguments, approval=decision.request_id)
        running, placed = plan.writer.placed(item, function)
        decision.call["function"]["name"] = function.name
        if bound is not None and plan.calls_made >= bound:  # approved, but over the bound
            decision.result["content"] = NOT_RUN.format(n=bound)
            events += [*placed, *plan.writer.called(running, {**item, "status": "incomplete"})]
            continue
        events += [*placed, plan.writer.calling(running)]
        outcome = await services.mcp.call(function, item["arguments"], plan.response_id)
        plan.calls_made += 1
        decision.result["content"] = outcome.text
        events += plan.writer.called(running, outcome_item(item, outcome))
    return events


async def prepare(
    services: Services, call: Call, response_id: str, created: int, pending: Pending,
    previous: str | None,
) -> Plan:  # fmt: skip
    """Everything before the model's first turn (see the module docstring, 1 and 2), and that
    turn opened: a refusal (no such model, ...) keeps its status when it comes in time."""
    part = call.mcp
    assert part is not None
    toolset = await _toolset(services, part)
    part.items.name_calls({(f.server, f.tool): f.name for f in toolset.functions.values()})
    specs = {spec.server: spec for spec in part.servers}

    def asks(function: McpFunction) -> bool:
        approval = specs[function.server].approval
        return approval.needed(function.tool, _read_only(toolset, function))

    writer = McpEvents(call, response_id, created, toolset.functions, asks)
    writer.base["previous_response_id"] = previous
    early = writer.start()
    for spec in part.servers:
        if spec.server not in part.items.listed:
            early += writer.listed(_listing(toolset, spec.server))
    max_rounds = services.settings.mcp_max_rounds
    plan = Plan(call, part, toolset, specs, writer, response_id, pending, max_rounds, early)
    if part.choice is not None:
        _forced(plan)  # a tool_choice naming no offered tool: a 400 before anything runs
    plan.early += await _approved(services, plan)
    plan.first = await _open_round(services, plan)
    return plan


async def _run_turn(services: Services, plan: Plan, cut: bool) -> AsyncIterator[Event]:
    """Run the calls the model made this turn (within the bounds) and add the turn to the
    chat; a call not run says why, to the model and in its item."""
    writer, bound = plan.writer, plan.part.max_tool_calls
    calls, results = [], []
    for running in writer.running:
        may = not cut and (bound is None or plan.calls_made < bound)
        if may:
            yield writer.calling(running)
            outcome = await services.mcp.call(running.function, running.item["arguments"],
                                              plan.response_id)  # fmt: skip
            plan.calls_made += 1
            text, item = outcome.text, outcome_item(running.item, outcome)
        else:
            text = NOT_RUN.format(n=bound)
            item = {**running.item, "status": "incomplete"}
        for event in writer.called(running, item):
            yield event
        calls.append({"id": item["id"], "type": "function",
                      "function": {"name": running.function.name,
                                   "arguments": item["arguments"]}})  # fmt: skip
        results.append({"role": "tool", "tool_call_id": item["id"], "content": text})
    plan.messages.append({"role": "assistant", "content": writer.seen.text or None,
                          "tool_calls": calls})  # fmt: skip
    plan.messages.extend(results)


async def rounds(
    services: Services, plan: Plan, chunks: AsyncIterator[bytes]
) -> AsyncIterator[Event]:
    """The response's events, turn after turn (see the module docstring, 3 and 4). `chunks`:
    the first turn's answer (its owner closes it); later turns are opened and closed here."""
    writer = plan.writer
    for event in plan.early:
        yield event
    answer: Answer | None = None
    try:
        while True:
            async for engine_event in answer_events(chunks):
                for event in writer.add(engine_event):
                    yield event
                if writer.failure is not None:
                    return
            cut = writer.seen.finish == "length"
            for event in writer.close("incomplete" if cut else "completed"):
                yield event
            if answer is not None:
                await answer.close()
                answer = None
            if not writer.running:
                break
            async for event in _run_turn(services, plan, cut or plan.last_round()):
                yield event
            if cut or writer.asked or writer.client_calls or plan.round >= plan.max_rounds:
                break
            plan.round += 1
            writer.next_round()
            try:
                answer = await _open_round(services, plan)
            except HearthError as error:
                log.warning("Responses %s: MCP turn %d could not start: %s", plan.response_id,
                            plan.round, error.message)  # fmt: skip
                for event in writer.failed_turn(error):
                    yield event
                return
            chunks = answer.stream()
    except (asyncio.CancelledError, GeneratorExit):
        if writer.failure is None:  # not an engine failure already told: the client left
            log.info("Responses %s: the client left; MCP loop stopped at turn %d (no further "
                     "call or turn)", plan.response_id, plan.round)  # fmt: skip
        raise
    finally:
        if answer is not None:
            await answer.close()
    if writer.asked:  # waits on the user: kept for previous_response_id
        output: list[Any] = writer.output
        plan.pending.keep(plan.response_id, [*plan.part.input, *output])
    for event in writer.finish():
        yield event


async def _sse(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    async for event in events:
        yield sse(event)


async def _whole(
    services: Services, call: Call, response_id: str, created: int, pending: Pending,
    previous: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The non-streamed form: the same events, folded into the final Response."""
    plan = await prepare(services, call, response_id, created, pending, previous)
    assert plan.first is not None
    final: dict[str, Any] | None = None
    events = rounds(services, plan, plan.first.stream())
    try:
        async for event in events:
            if event["type"] == "error":
                raise EngineError(str(event.get("message")))
            if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await plan.first.close()
    assert final is not None
    return final


async def respond(
    request: Request, call: Call, response_id: str, created: int, previous: str | None
) -> Response:
    """The route's answer for a request with MCP tools, streamed or whole."""
    services = services_of(request)
    pending = pending_of(request.app.state)
    if call.stream:

        async def accept(plan: Plan) -> Flow:
            assert plan.first is not None
            return Flow(plan.first.stream(), lambda chunks: _sse(rounds(services, plan, chunks)),
                        plan.first.close, beat_on=True)  # fmt: skip

        opening = prepare(services, call, response_id, created, pending, previous)
        return await stream_answer(request, opening, accept, BEATS)
    whole = _whole(services, call, response_id, created, pending, previous)
    ok, reply = await unless_disconnected(request, whole)
    if not ok or reply is None:
        return client_closed()
    return JSONResponse(reply)
