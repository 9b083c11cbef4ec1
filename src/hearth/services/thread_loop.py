"""The tool loop of a thread run: the model calls the conversation's MCP tools, Hearth runs
them, and the model goes on, all in ONE assistant message, as Jan's web app does (issue 26).

Each round streams the engine's chunks to the client as they are (without the round's own
`data: [DONE]`: one ends the whole run). Between rounds the run's stream carries two events of
its own, which the page reads and other clients may skip:

    event: tool_call     data: {"id", "name", "server", "tool", "arguments", "state"}
    event: tool_result   data: {"id", "name", "server", "tool", "state": "completed",
                                "response": {"content": [{"type": "text", "text"}], "error"},
                                "is_error", "cut"}

`state` of a tool_call is "running", or "awaiting_approval": then the run ends, the message
saved holding the call (`state: "pending"`) and the marker `metadata.awaiting_approval`, until
the user's decision (POST .../messages/{id}/approval) continues the same message. Calls are kept
in `metadata.tool_calls` as Jan keeps them: `{tool: {id, type: "function", function: {name,
arguments}}, response, state: "completed"}`. The rounds are bounded (`mcp_max_rounds`, the
last with tool_choice "none"); a client that leaves cancels the call in flight and the loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from hearth.engines.events import prompt_progress
from hearth.mcp import DENIED
from hearth.services.thread_tools import AWAITING
from hearth.threads import jan
from hearth.threads.ids import new_message_id
from hearth.threads.views import content_parts, part_text

if TYPE_CHECKING:
    from hearth.engines.proxy import Answer
    from hearth.mcp.hosts import CallOutcome
    from hearth.services.thread_tools import ThreadTools, ToolPlan
    from hearth.threads.answer import ThreadReply

log = logging.getLogger("hearth.threads")


class Run(Protocol):
    """What the loop needs of `thread_runs.Run` (a protocol: the run imports the loop)."""

    thread_id: str
    message_id: str
    plan: ToolPlan | None
    reply: ThreadReply
    upstream: Answer | None
    calls: list[dict[str, Any]]
    denied: list[str]
    allowed_once: set[str]
    awaiting: dict[str, Any] | None
    resuming: bool
    first_choice: Any
    asked_choice: Any

    @property
    def tools(self) -> ThreadTools: ...

    def save_growing(self) -> None: ...

    async def save_now(self) -> None: ...

    async def next_round(self, choice: Any) -> bytes | None: ...


DONE = b"data: [DONE]"
#: What a call cut short by the client's leaving answers (the model never reads it in this
#: run; a later run sees the call as stopped).
STOPPED = "The call was stopped: the user stopped the answer."


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def jan_response(text: str, error: str = "") -> dict[str, Any]:
    """Jan's MCPToolCallResult: `{error, content: [{type: "text", text}]}`."""
    return {"error": error, "content": [{"type": "text", "text": text}]}


async def without_done(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The round's events as whole events, its `data: [DONE]` left out (one ends the run), its
    prompt progress as comments."""
    held = b""
    async for raw in source:
        held += raw
        end = held.rfind(b"\n\n")
        if end < 0:
            continue
        events, held = held[: end + 2], held[end + 2 :]
        kept = [_progress(e) for e in events.split(b"\n\n") if e and e.strip() != DONE]
        if kept:
            yield b"".join(e + b"\n\n" for e in kept)
    if held.strip() and held.strip() != DONE:
        yield held


def _progress(event: bytes) -> bytes:
    """A later round's `prompt_progress` chunk as the comment the first round's is made
    (`: prompt 1234/19500`, server/respond.py); any other event as it is."""
    if not event.startswith(b"data:") or b'"prompt_progress"' not in event:
        return event
    try:
        chunk = json.loads(event[5:])
    except ValueError:
        return event
    progress = prompt_progress(chunk) if isinstance(chunk, dict) else None
    if progress is None:
        return event
    return f": prompt {progress.processed}/{progress.total}".encode()


def well_formed(entry: Any) -> bool:
    """An entry this loop can run or show: `{tool: {id, function: {name, arguments}}}` (a
    stranger's messages.jsonl may hold anything; other entries are kept as they are)."""
    tool = entry.get("tool") if isinstance(entry, dict) else None
    function = tool.get("function") if isinstance(tool, dict) else None
    return (
        isinstance(function, dict)
        and isinstance(tool.get("id"), str)  # type: ignore[union-attr]
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
    )


def message_text(raw: dict[str, Any]) -> tuple[str, str]:
    """A saved answer's (text, reasoning), to continue it after an approval."""
    parts = content_parts(raw.get("content"))
    joined = "\n".join(t for t in map(part_text, parts) if t)
    reasoning, text = jan.split_think(joined)
    return text, reasoning


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A `metadata.tool_calls` entry as the run's stream shows it."""
    function = entry["tool"]["function"]
    where = entry.get("mcp")
    where = where if isinstance(where, dict) else {}  # a stranger's file may hold anything
    return {
        "id": entry["tool"]["id"],
        "name": function["name"],
        "server": where.get("server"),
        "tool": where.get("tool"),
        "arguments": function["arguments"],
    }


def take_calls(run: Run) -> list[dict[str, Any]]:
    """The round's calls as Jan's entries (`state: "pending"`), added to the message's. Each
    gets an id of Hearth's own, unique in the conversation: approvals are keyed by it, and an
    engine may number its calls `call_0`, `call_1` afresh each round (the chat sent back to
    the model carries the saved ids, so the engine's own are not needed)."""
    plan = run.plan
    assert plan is not None
    fresh = []
    for call in run.reply.gathered.tool_calls():
        call_id = f"call_{new_message_id().lower()}"
        entry = jan.jan_tool_call(call_id, call.name, call.arguments or "{}")
        function = plan.toolset.get(call.name)
        if function is not None:
            entry["mcp"] = {"server": function.server, "tool": function.tool}
        fresh.append(entry)
    run.calls.extend(fresh)
    return fresh


async def run_pending(run: Run) -> AsyncIterator[bytes]:
    """Run the message's calls that have no result yet, in order; stop at the first that needs
    the user's approval (`run.awaiting` set)."""
    plan = run.plan
    assert plan is not None
    for entry in run.calls:
        if not well_formed(entry) or entry.get("state") != "pending":
            continue
        view = entry_view(entry)
        function = plan.toolset.get(view["name"])
        if function is None:
            known = ", ".join(sorted(plan.toolset.functions)) or "none"
            text = f"Error calling tool {view['name']}: no such tool (tools: {known})."
            entry.update(response=jan_response(text, "no such tool"), state="completed")
            shown = {**view, "state": "completed", "response": entry["response"]}
            yield sse_event("tool_result", {**shown, "is_error": True, "cut": False})
            continue
        once = view["id"] in run.allowed_once
        run.allowed_once.discard(view["id"])  # an approval "once" runs one call, never two
        if not once and plan.needs_approval(function):
            run.awaiting = {"call_id": view["id"], "name": view["name"], "server": function.server,
                            "tool": function.tool, "tools": plan.named}  # fmt: skip
            yield sse_event("tool_call", {**view, "state": "awaiting_approval"})
            return
        yield sse_event("tool_call", {**view, "state": "running"})
        outcome = await _call(run, entry, function)
        yield sse_event(
            "tool_result",
            {**view, "state": "completed", "response": entry["response"],
             "is_error": outcome.is_error, "cut": outcome.cut},
        )  # fmt: skip
        await run.save_now()


async def _call(run: Run, entry: dict[str, Any], function: Any) -> CallOutcome:
    """One call through the MCP service (logged with the thread and message); a client that
    leaves meanwhile cancels it, and the entry says it was stopped."""
    label = f"thread {run.thread_id} message {run.message_id}"
    arguments = entry["tool"]["function"]["arguments"]
    try:
        outcome = await run.tools.mcp.call(function, arguments, label)
    except BaseException:  # cancelled (the client left): the entry keeps what happened
        entry.update(response=jan_response(STOPPED, "stopped"), state="completed")
        raise
    error = outcome.text if outcome.is_error else ""
    entry.update(response=jan_response(outcome.text, error), state="completed")
    return outcome


def decide(entry: dict[str, Any], decision: str) -> None:
    """A denied call answers the model Jan's refusal; an allowed one stays pending (to run)."""
    if decision == "deny":
        entry.update(response=jan_response(DENIED, "disallowed"), state="completed")


def round_choice(run: Run, round_number: int, asked: Any) -> str | Any:
    """The tool_choice of a round: "none" on the last, "required" on a fresh run's first when
    the conversation says so, else what the run's parameters ask (default "auto")."""
    plan = run.plan
    assert plan is not None
    if round_number >= plan.max_rounds:
        return "none"
    if round_number == 1 and not run.resuming and plan.first_choice == "required":
        return "required"
    return asked if asked is not None else "auto"


async def drive(run: Run, first: AsyncIterator[bytes] | None) -> AsyncGenerator[bytes, None]:
    """The whole loop: stream a round, run its calls, open the next; `first` is the opened
    round's stream (None: a continuation after an approval, its calls run first)."""
    plan = run.plan
    assert plan is not None
    source, rounds, choice = first, 1 if first is not None else 0, run.first_choice
    for entry in run.calls:  # a continuation: the calls the user denied, told first
        if well_formed(entry) and entry["tool"]["id"] in run.denied:
            view = {**entry_view(entry), "state": "completed", "response": entry.get("response")}
            yield sse_event("tool_result", {**view, "is_error": True, "cut": False})
    while True:
        if source is not None:
            async for event in without_done(source):
                run.reply.feed(event)
                yield event
                run.save_growing()
            if run.reply.error:
                break
            if choice == "none" or not take_calls(run):
                break
        async for event in run_pending(run):
            yield event
        if run.awaiting is not None:
            break
        rounds += 1
        choice = round_choice(run, rounds, run.asked_choice)
        failure = await run.next_round(choice)
        if failure is not None:
            yield failure
            break
        assert run.upstream is not None
        source = run.upstream.stream()
    yield DONE + b"\n\n"


def awaiting_marker(run: Run) -> dict[str, Any]:
    return {AWAITING: run.awaiting} if run.awaiting is not None else {}


async def close_quietly(run: Run) -> None:
    if run.upstream is not None:
        try:
            await run.upstream.close()
        except Exception as exc:  # closing a finished answer must not fail the run
            log.debug("closing a round's answer: %s", exc)
