"""A Responses request's MCP input items, read into chat messages (issue 26, point 3). Pure.

A client sends a whole earlier turn back (OpenAI's stateless way), so the input may hold:

- `mcp_list_tools`: nothing for the model (it is offered the tools anyway); its server is not
  listed again in this response's output, as OpenAI does.
- `mcp_call`: a call that ran; an assistant tool call and its result, as a function call and
  its output are.
- `mcp_approval_request`: a call the model asked for, waiting on the user; nothing by itself.
- `mcp_approval_response` `{approval_request_id, approve, reason?}`: the user's answer. It must
  name an `mcp_approval_request` in the same input (one that came back with previous_response_id
  counts): the call that runs is the one the request item describes, never one an approval
  invents. Approved, it runs before the model's first turn (`mcp_run.py`) unless an `mcp_call`
  carrying its `approval_request_id` shows it already ran; denied, the model reads that the user
  refused. Either way the call and its result join the chat where the response stands.

The tool-call names are the tool's own; `name_calls` renames them once the request's tools are
known (two servers sharing a tool name: `server__tool`, as `services/mcp.py` offers them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.mcp import DENIED  # what the model reads for a call the user refused (Jan's words)

MAX_ARGUMENTS = 1 << 20  # characters of one call's arguments


def _bad(message: str, param: str) -> InvalidParameter:
    return InvalidParameter(message, param=param)


def _str(value: Any, param: str, *, empty: bool = False, limit: int = 256) -> str:
    if not isinstance(value, str) or (not empty and not value) or len(value) > limit:
        raise _bad(f"'{param}' must be a {'' if empty else 'non-empty '}string.", param)
    return value


@dataclass(frozen=True)
class Requested:
    """An `mcp_approval_request` item: the call as the model asked for it."""

    id: str
    server: str
    name: str
    arguments: str


@dataclass
class Decision:
    """An `mcp_approval_response`, with the chat messages it placed (filled when it runs)."""

    request_id: str
    approve: bool
    reason: str | None
    where: str
    call: dict[str, Any]  # the assistant's tool_call
    messages: tuple[dict[str, Any], dict[str, Any]]  # the assistant and tool messages
    request: Requested | None = None  # resolved in `finish`

    @property
    def result(self) -> dict[str, Any]:
        return self.messages[1]


@dataclass
class McpInput:
    """What the input's MCP items say, beside the chat messages they became."""

    listed: set[str] = field(default_factory=set)  # servers an mcp_list_tools item listed
    requests: dict[str, Requested] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)  # the ones still to run or refuse
    ran: set[str] = field(default_factory=set)  # approval ids an mcp_call already carries
    calls: list[tuple[dict[str, Any], str, str]] = field(default_factory=list)

    def name_calls(self, names: dict[tuple[str, str], str]) -> None:
        """Each tool call named as the model knows the tool now ((server, tool) -> name)."""
        for call, server, tool in self.calls:
            call["function"]["name"] = names.get((server, tool), tool)


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _call_result(item: dict[str, Any], where: str) -> str:
    """An mcp_call's output, or its error as text for the model."""
    output = item.get("output")
    if output is not None:
        return _str(output, f"{where}.output", empty=True, limit=1 << 24)
    error = item.get("error")
    if error is None:
        return ""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        content = error.get("content")
        if isinstance(content, list):
            texts = [b.get("text") for b in content if isinstance(b, dict)]
            return "\n".join(t for t in texts if isinstance(t, str))
        if isinstance(error.get("message"), str):
            return str(error["message"])
    return json.dumps(error)[:10_000]


def _pair(call: dict[str, Any], text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    return assistant, {"role": "tool", "tool_call_id": call["id"], "content": text}


def read_item(
    kind: str, item: dict[str, Any], where: str, messages: list[dict[str, Any]], state: McpInput
) -> None:
    """One MCP input item (`kind` one of `KINDS`) into `messages` and `state`."""
    if kind == "mcp_list_tools":
        state.listed.add(_str(item.get("server_label"), f"{where}.server_label"))
    elif kind == "mcp_call":
        server = _str(item.get("server_label"), f"{where}.server_label")
        name = _str(item.get("name"), f"{where}.name")
        arguments = _str(item.get("arguments"), f"{where}.arguments", empty=True,
                         limit=MAX_ARGUMENTS)  # fmt: skip
        call = _tool_call(_str(item.get("id"), f"{where}.id"), name, arguments)
        approval = item.get("approval_request_id")
        if approval is not None:
            state.ran.add(_str(approval, f"{where}.approval_request_id"))
        state.calls.append((call, server, name))
        messages.extend(_pair(call, _call_result(item, where)))
    elif kind == "mcp_approval_request":
        requested = Requested(
            _str(item.get("id"), f"{where}.id"),
            _str(item.get("server_label"), f"{where}.server_label"),
            _str(item.get("name"), f"{where}.name"),
            _str(item.get("arguments"), f"{where}.arguments", empty=True, limit=MAX_ARGUMENTS),
        )
        state.requests[requested.id] = requested
    else:
        _decision(item, where, messages, state)


def _decision(
    item: dict[str, Any], where: str, messages: list[dict[str, Any]], state: McpInput
) -> None:
    request_id = _str(item.get("approval_request_id"), f"{where}.approval_request_id")
    approve = item.get("approve")
    if not isinstance(approve, bool):
        raise _bad("'approve' must be true or false.", f"{where}.approve")
    reason = item.get("reason")
    if reason is not None:
        reason = _str(reason, f"{where}.reason", empty=True, limit=4096)
    if any(d.request_id == request_id for d in state.decisions):
        raise _bad(f"Approval request '{request_id[:80]}' is answered twice: answer it once.",
                   f"{where}.approval_request_id")  # fmt: skip
    call = _tool_call(request_id, "", "")
    pair = _pair(call, "")
    messages.extend(pair)
    state.decisions.append(Decision(request_id, approve, reason, where, call, pair))


KINDS = frozenset({"mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response"})


def finish(messages: list[dict[str, Any]], state: McpInput) -> None:
    """Resolve each approval response against the requests in the input: unknown ones are a
    400; those an mcp_call shows already ran leave the chat (the mcp_call item holds them);
    denials get the refusal; approved ones wait for `mcp_run` to run them."""
    placed: list[dict[str, Any]] = []
    kept = []
    for decision in state.decisions:
        request = state.requests.get(decision.request_id)
        if request is None:
            raise _bad(
                f"This mcp_approval_response answers approval request "
                f"'{decision.request_id[:80]}', which is not in the input: send the "
                "mcp_approval_request item back with it, or use the previous_response_id of "
                "the response that asked.",
                f"{decision.where}.approval_request_id",
            )
        decision.request = request
        if decision.request_id in state.ran:
            placed.extend(decision.messages)
            continue
        decision.call["function"].update(name=request.name, arguments=request.arguments)
        state.calls.append((decision.call, request.server, request.name))
        if not decision.approve:
            reason = f" Reason: {decision.reason}" if decision.reason else ""
            decision.result["content"] = DENIED + reason
            continue
        kept.append(decision)
    state.decisions = kept
    if placed:
        messages[:] = [m for m in messages if not any(m is p for p in placed)]
