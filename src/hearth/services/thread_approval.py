"""The user's decision on a tool call that waits for approval, and the run that continues the
same assistant message with it: `POST /v1/threads/{id}/messages/{mid}/approval` (issue 26).

Why a saved state and a second request, not a question held open in the run's stream: the
decision may come after a reload, from another tab, or never; the waiting answer is an ordinary
saved message (`metadata.awaiting_approval` names the call), so nothing is held in memory, and
the page draws the same card from the file. Decisions: "once" (this call), "thread" (this tool
in this conversation: `metadata.mcp_approved`, signed), "always" (this tool everywhere:
`<state_dir>/mcp-approvals.json`), "deny" (the model reads Jan's refusal and goes on).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio

from hearth.core.errors import Conflict, InvalidRequest, NotFound
from hearth.core.keepalive import keep_alive_param
from hearth.services import thread_loop
from hearth.services.context_fit import policy_of
from hearth.services.thread_runs import Run, ThreadService
from hearth.services.thread_tools import (
    APPROVED_KEY,
    AWAITING,
    DECISIONS,
    Approvals,
    ToolPlan,
    run_tools,
)
from hearth.threads import interrupted
from hearth.threads.answer import chat_request
from hearth.threads.edits import need_object
from hearth.threads.views import thread_model

if TYPE_CHECKING:
    from hearth.services.mcp import McpFunction


def _decision(body: Any) -> tuple[str, str, bool]:
    body = need_object(body, 'the decision: {"call_id": "...", "decision": "once"}')
    call_id, decision = body.get("call_id"), body.get("decision")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "Name the call: 'call_id' (from metadata.awaiting_approval).", param="call_id"
        )
    if decision not in DECISIONS:
        raise InvalidRequest(
            f"'decision' must be one of {', '.join(DECISIONS)}: once (this call), thread (this "
            "tool in this conversation), always (this tool everywhere), deny.",
            param="decision",
        )
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    return call_id, str(decision), stream


def _waiting(
    stored: list[tuple[Any, dict[str, Any]]], message_id: str, call_id: str
) -> dict[str, Any]:
    """The marker of the answer that waits for this call (it must be the thread's last)."""
    index = next((i for i, (_, raw) in enumerate(stored) if raw.get("id") == message_id), None)
    if index is None:
        raise NotFound(f"No message {message_id!r} in this thread.", param="message_id")
    meta = stored[index][1].get("metadata")
    marker = meta.get(AWAITING) if isinstance(meta, dict) else None
    if not isinstance(marker, dict) or marker.get("call_id") != call_id:
        raise Conflict(
            f"Message {message_id!r} is not waiting for a decision on call {call_id!r} "
            "(decided already, or never asked). GET its message to see its calls."
        )
    if index != len(stored) - 1:
        raise Conflict(
            "A newer message follows this answer: its call can no longer be approved. Send "
            "your question again to let the model call the tool anew."
        )
    return marker


def _waiting_call(
    raw: dict[str, Any], call_id: str, plan: ToolPlan, decision: str
) -> McpFunction | None:
    """The function the waiting call runs, as this conversation offers it now. The saved
    entry's own labels (`mcp.server`, `mcp.tool`) must agree: the card the user answers shows
    them, and a file from elsewhere could make them lie."""
    listed = _meta(raw).get("tool_calls")
    calls = [c for c in listed if thread_loop.well_formed(c)] if isinstance(listed, list) else []
    entry = next((c for c in calls if c["tool"]["id"] == call_id), None)
    if entry is None or entry.get("state") != "pending":
        raise Conflict(f"The answer holds no call {call_id!r} waiting to run.")
    name = entry["tool"]["function"]["name"]
    function = plan.toolset.get(name)
    if function is None:
        if decision == "deny":
            return None
        raise Conflict(
            f"This conversation no longer offers the tool {name!r}: turn its server on in the "
            "conversation's settings, or deny the call."
        )
    label = entry.get("mcp")
    if label is not None and label != {"server": function.server, "tool": function.tool}:
        raise Conflict(
            f"The waiting call names {label!r}, but {name!r} is {function.server}'s "
            f"{function.tool!r} now: it is not run. Deny it, or ask again."
        )
    return function


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, dict) else {}


def approve_thread(
    service: ThreadService, approvals: Approvals, thread_id: str, server: str, tool: str
) -> None:
    """Allow `server`'s `tool` in this conversation: a signed entry in its thread.json."""
    entry = {"server": server, "tool": tool, "sig": approvals.sign(thread_id, server, tool)}

    def change(raw: dict[str, Any]) -> None:
        meta = _meta(raw)
        listed = [e for e in meta.get(APPROVED_KEY) or [] if isinstance(e, dict) and e != entry]
        raw["metadata"] = {**meta, APPROVED_KEY: [*listed, entry]}

    service.store.update(thread_id, change)


async def resume(service: ThreadService, thread_id: str, message_id: str, body: Any) -> Run:
    """Record the decision and continue the waiting answer: its call runs (or is refused),
    then the model's next rounds, into the same message."""
    call_id, decision, stream = _decision(body)
    tools = service.tools
    if tools is None:
        raise InvalidRequest("This server runs no MCP tools.", param="call_id")
    store = service.store
    stored = await asyncio.to_thread(store.messages, thread_id)
    marker = _waiting(stored, message_id, call_id)
    thread = await asyncio.to_thread(store.get, thread_id)
    named = run_tools(marker.get("tools"))  # a stranger's file: names, checked again
    plan = await tools.plan(thread_id, thread.raw.get("metadata"), named)
    if plan is None:
        raise InvalidRequest(
            "The conversation has no MCP server turned on any more.", param="call_id"
        )
    function = _waiting_call(stored[-1][1], call_id, plan, decision)
    if function is not None and decision == "thread":
        where = (thread_id, function.server, function.tool)
        await asyncio.to_thread(approve_thread, service, tools.approvals, *where)
    elif function is not None and decision == "always":
        await asyncio.to_thread(tools.approvals.allow_always, function.server, function.tool)
    if function is not None and decision in ("thread", "always"):
        plan.trusted.add((function.server, function.tool))
    history = [raw for _, raw in stored[:-1]]
    waiting = stored[-1][1]
    model = (
        waiting.get("model") if isinstance(waiting.get("model"), str) else thread_model(thread.raw)
    )
    request = {"model": model, "stream": stream}
    chat, keep_alive = chat_request(thread.raw, history, request)
    await asyncio.to_thread(service.check_model, chat["model"])
    run = Run(service, thread_id, chat["model"], stream=stream, message_id=message_id)
    seconds = None if keep_alive is None else keep_alive_param(keep_alive)
    policy = policy_of(thread.raw.get("metadata"), service.context_overflow)
    run.with_tools(plan, history, thread.raw, request, (seconds, policy))
    run.resuming = True
    if decision == "deny":
        run.denied.append(call_id)
    else:
        run.allowed_once.add(call_id)
    with anyio.CancelScope(shield=True):
        await asyncio.to_thread(_reopen, run, call_id, decision)
    return run


def _reopen(run: Run, call_id: str, decision: str) -> None:
    """Mark the answer pending again (this process writes it), the decision applied, under the
    thread's lock: a second decision on the same call finds no marker and is refused."""
    found: dict[str, Any] = {}

    def edit(raw: dict[str, Any]) -> None:
        meta = _meta(raw)
        marker = meta.get(AWAITING)
        if not isinstance(marker, dict) or marker.get("call_id") != call_id:
            raise Conflict(f"Call {call_id!r} was decided already.")
        calls = [dict(c) for c in meta.get("tool_calls") or [] if isinstance(c, dict)]
        for entry in calls:
            if thread_loop.well_formed(entry) and entry["tool"]["id"] == call_id:
                thread_loop.decide(entry, decision)
        kept = {k: v for k, v in meta.items() if k != AWAITING}
        raw.update(status="pending")
        raw["metadata"] = {**kept, **interrupted.writer_mark(), "tool_calls": calls}
        found.update(raw)

    run.service.live.add(run.message_id)
    try:
        run.message = run.service.store.edit_message(run.thread_id, run.message_id, edit)
    except BaseException:
        run.service.live.discard(run.message_id)
        raise
    meta = found.get("metadata") or {}
    run.calls = meta.get("tool_calls") or []
    text = thread_loop.message_text(found)
    run.before = text
