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
import logging
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
    ThreadTools,
    ToolPlan,
    saved_tools,
)
from hearth.threads import interrupted
from hearth.threads.answer import chat_request
from hearth.threads.edits import need_object
from hearth.threads.views import thread_model

if TYPE_CHECKING:
    from hearth.services.mcp import McpFunction

log = logging.getLogger("hearth.threads")


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
    waiting = (c for c in calls if c["tool"]["id"] == call_id and c.get("state") == "pending")
    entry = next(waiting, None)
    if entry is None:
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


def thread_grant(approvals: Approvals, thread_id: str, server: str, tool: str) -> dict[str, Any]:
    """The signed entry that allows `server`'s `tool` in this conversation (a 409 naming the
    approvals file when its key cannot be read)."""
    return {"server": server, "tool": tool, "sig": approvals.sign(thread_id, server, tool)}


def approve_thread(service: ThreadService, thread_id: str, entry: dict[str, Any]) -> None:
    """Allow a tool in this conversation: the signed entry added to its thread.json."""

    def change(raw: dict[str, Any]) -> None:
        meta = _meta(raw)
        listed = meta.get(APPROVED_KEY)
        kept = [e for e in listed if e != entry] if isinstance(listed, list) else []
        raw["metadata"] = {**meta, APPROVED_KEY: [*kept, entry]}

    service.store.update(thread_id, change)


def _grant(
    service: ThreadService, tools: ThreadTools, thread_id: str, grant: dict[str, Any] | None
) -> None:
    """Save a "thread" or "always" decision, once it has won (the answer reopened). A write
    that fails now is logged, not raised: the answer already goes on, its call approved."""
    if grant is None:
        return
    try:
        if "sig" in grant:
            approve_thread(service, thread_id, grant)
        else:
            tools.approvals.allow_always(grant["server"], grant["tool"])
    except Exception as exc:
        log.warning("thread %s: could not save the approval of %s's %r: %s",
                    thread_id, grant["server"], grant["tool"], exc)  # fmt: skip


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
    try:  # a stranger's file: names checked again, and every call asking
        named = saved_tools(marker.get("tools"))
    except InvalidRequest as exc:
        raise Conflict(
            f"The waiting answer's saved tools (metadata.{AWAITING}.tools) are not valid: "
            f"{exc.message} Send your question again."
        ) from None
    plan = await tools.plan(thread_id, thread.raw.get("metadata"), named)
    if plan is None:
        raise InvalidRequest(
            "The conversation offers no MCP tool any more (its servers, or all their tools, "
            "are turned off): turn one on in its settings, or send your question again.",
            param="call_id",
        )
    function = _waiting_call(stored[-1][1], call_id, plan, decision)
    grant = None
    if function is not None and decision in ("thread", "always"):
        grant = await asyncio.to_thread(_prepare_grant, tools, thread_id, function, decision)
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
        await asyncio.to_thread(_grant, service, tools, thread_id, grant)  # it won: now saved
    return run


def _prepare_grant(
    tools: ThreadTools, thread_id: str, function: McpFunction, decision: str
) -> dict[str, Any]:
    """What a "thread" or "always" decision will save: checked now (a broken approvals file
    refuses the decision before it is applied), written only once the decision has won."""
    if decision == "thread":
        return thread_grant(tools.approvals, thread_id, function.server, function.tool)
    tools.approvals.ready()
    return {"server": function.server, "tool": function.tool}


def _reopen(run: Run, call_id: str, decision: str) -> None:
    """Mark the answer pending again (this process writes it), the decision applied, under the
    thread's lock: a second decision on the same call finds no marker and is refused."""
    found: dict[str, Any] = {}
    live, added = run.service.live, []

    def edit(raw: dict[str, Any]) -> None:
        meta = _meta(raw)
        marker = meta.get(AWAITING)
        if not isinstance(marker, dict) or marker.get("call_id") != call_id:
            raise Conflict(f"Call {call_id!r} was decided already.")
        listed = meta.get("tool_calls")
        calls = [dict(c) for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        waiting = (c for c in calls if thread_loop.well_formed(c) and c.get("state") == "pending")
        entry = next((c for c in waiting if c["tool"]["id"] == call_id), None)
        if entry is not None:
            thread_loop.decide(entry, decision)
        kept = {k: v for k, v in meta.items() if k != AWAITING}
        raw.update(status="pending")
        raw["metadata"] = {**kept, **interrupted.writer_mark(), "tool_calls": calls}
        found.update(raw)
        # This decision won: the answer is this process's to write, live before it is on
        # disk `pending` (so no sweep takes it). A losing decision never touches `live`: the
        # id there is the winner's, whose answer is running.
        live.add(run.message_id)
        added.append(True)

    try:
        run.message = run.service.store.edit_message(run.thread_id, run.message_id, edit)
    except BaseException:
        if added:  # the write failed after this call took the answer
            live.discard(run.message_id)
        raise
    meta = found.get("metadata") or {}
    run.calls = meta.get("tool_calls") or []
    text = thread_loop.message_text(found)
    run.before = text
