"""OpenAI's Responses API <-> chat completions, as pure functions (no I/O).

`POST /v1/responses` is a translation at the face: `call` turns a Responses body into the
chat-completions body the engine gets (so Hearth's chat path, its errors and keep_alive apply
once, for both dialects), and `response` turns the engine's chat completion into a Response
object, read as the same typed events a stream of it makes (`engines/events.py`). The streamed
form is in `stream.py`, built from the same pieces.

Everything in a request is a stranger's data: only the fields below reach the engine, each
type-checked and bounded; fields Hearth does not act on (`user`, `reasoning`, `truncation`,
...) are ignored; anything that needs state Hearth does not keep (`previous_response_id`,
`conversation`, `item_reference`) is a 400 that says to send the whole conversation instead.

Two mappings the engine forces: a named `tool_choice` becomes "required" with only that tool
in the list (llama.cpp takes tool_choice as a string only), and `developer` messages become
`system` messages. Tools are read in `tools.py` (namespaces flattened, hosted tools left out).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import InvalidParameter, InvalidRequest
from hearth.core.keepalive import keep_alive_param
from hearth.engines.events import Gathered
from hearth.server.respond import whole_answer
from hearth.server.responses import mcp_input
from hearth.server.responses import tools as tool_list
from hearth.server.responses.mcp_request import McpChoice, McpTool
from hearth.server.responses.shapes import (
    Echo,
    FunctionCallItem,
    MessageItem,
    OutputItem,
    Response,
    Status,
    Usage,
)

MAX_ITEMS = 4096  # input items in one request
MAX_METADATA = 16  # OpenAI's own limits on metadata: 16 pairs, 64-char keys, 512-char values
MAX_KEY, MAX_VALUE = 64, 512
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
NOT_STORED = (
    "Hearth does not store responses, so '{field}' cannot be used: send the whole conversation "
    "as input items instead (earlier messages, function_call and function_call_output items)."
)
#: Hearth keeps only responses that wait on an MCP approval, for an hour (mcp_pending.py).
NOT_PENDING = (
    "Hearth does not store responses (except, for an hour, one that ended with "
    "mcp_approval_request items), and none is kept as '{id}': send the whole conversation as "
    "input items instead (earlier messages, function_call, function_call_output and MCP items)."
)


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (`resp_...`, `msg_...`, `fc_...`): unique, never reused."""
    return f"{prefix}_{secrets.token_hex(16)}"


@dataclass
class Call:
    """One Responses request, translated: the chat body and what the answer echoes back."""

    name: str  # the model as the client named it
    body: dict[str, Any]  # the chat-completions body for the engine
    echo: Echo  # request fields a Response repeats
    stream: bool = False
    keep_alive: float | None = None
    names: tool_list.Names = field(default_factory=tool_list.Names)  # namespaced functions
    left_out: list[str] = field(default_factory=list)  # tool types the model did not see
    mcp: McpPart | None = None  # the request names MCP servers: Hearth runs the calls


@dataclass
class McpPart:
    """What a request with `{"type": "mcp"}` tools needs beyond the chat body (mcp_run.py)."""

    servers: list[McpTool]
    choice: McpChoice | None  # tool_choice {"type": "mcp"}
    functions: list[dict[str, Any]]  # every function tool of the client's (chat shape)
    items: mcp_input.McpInput  # what the input's MCP items said
    max_tool_calls: int | None
    input: list[dict[str, Any]]  # the input items (kept for previous_response_id)
    forced: list[dict[str, Any]] | None = None  # tool_choice named a client function


# ---- small readers ------------------------------------------------------------------------


def _bad(message: str, param: str) -> InvalidParameter:
    return InvalidParameter(message, param=param)


def _str(value: Any, param: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _bad(f"'{param}' must be a {'' if empty else 'non-empty '}string.", param)
    return value


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"'{key}' must be a number.", key)
    if not low <= value <= high:
        raise _bad(f"'{key}' must be between {low:g} and {high:g}.", key)
    return float(value)


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"'{key}' must be true or false.", key)
    return value


def _max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad("'max_output_tokens' must be a positive integer.", "max_output_tokens")
    return value


def _metadata(value: Any) -> dict[str, str]:
    """Echoed back untouched; bounded as OpenAI bounds it."""
    if value is None:
        return {}
    ok = isinstance(value, dict) and len(value) <= MAX_METADATA
    ok = ok and all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_KEY and len(v) <= MAX_VALUE
        for k, v in value.items()
    )
    if not ok:
        raise _bad(
            f"'metadata' must be an object of at most {MAX_METADATA} string pairs (keys up to "
            f"{MAX_KEY} characters, values up to {MAX_VALUE}).",
            "metadata",
        )
    return dict(value)


# ---- input items -> chat messages ---------------------------------------------------------


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part -> a chat content part (text or image_url)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text", "refusal"):
        key = "refusal" if kind == "refusal" else "text"
        return {"type": "text", "text": _str(part.get(key), f"{where}.{key}")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url.startswith("data:image/"):
            raise _bad(
                "Hearth takes images as an 'image_url' holding a data: URL "
                "(data:image/png;base64,...): it fetches no URLs for a request, and file_id "
                "needs OpenAI's file store.",
                f"{where}.image_url",
            )
        return {"type": "image_url", "image_url": {"url": url}}
    raise _bad(
        f"Unsupported content part type {json.dumps(kind)[:60]}: Hearth takes input_text, "
        "input_image and (in assistant messages) output_text.",
        f"{where}.type",
    )


def _content(value: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    """A message's content: a string, or parts (joined into one string for non-user roles,
    since chat templates expect text there)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad("A message's 'content' must be a string or a list of parts.", where)
    parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(value)]
    if role == "user":
        return parts
    if any(p["type"] != "text" for p in parts):
        raise _bad(f"Images can only be sent in user messages, not {role} ones.", where)
    return "".join(p["text"] for p in parts)


def _output_text(value: Any, where: str) -> str:
    """A function_call_output's `output`: a string, or text parts joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(_part(p, f"{where}[{i}]").get("text", "")) for i, p in enumerate(value))
    raise _bad("'output' must be a string or a list of input_text parts.", where)


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    """A call sent back; a namespaced one under the flat name the model knows it by."""
    name = _str(item.get("name"), f"{where}.name", empty=False)
    namespace = item.get("namespace")
    if namespace is not None:
        namespace = _str(namespace, f"{where}.namespace")
    return {
        "id": _str(item.get("call_id"), f"{where}.call_id", empty=False),
        "type": "function",
        "function": {
            "name": tool_list.flat_name(namespace, name),
            "arguments": _str(item.get("arguments", ""), f"{where}.arguments"),
        },
    }


def _item(item: Any, where: str, messages: list[dict[str, Any]], mcp: mcp_input.McpInput) -> None:
    """Append one input item to `messages` (function calls join the assistant turn)."""
    if not isinstance(item, dict):
        raise _bad("Each input item must be an object.", where)
    kind = item.get("type", "message")
    if kind == "message":
        role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise _bad("A message's 'role' must be user, system, developer or assistant.", where)
        messages.append({"role": role, "content": _content(item.get("content"), role, where)})
    elif kind == "function_call":
        call = _function_call(item, where)
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id = _str(item.get("call_id"), f"{where}.call_id", empty=False)
        text = _output_text(item.get("output"), f"{where}.output")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
    elif kind in mcp_input.KINDS:
        mcp_input.read_item(kind, item, where, messages, mcp)
    elif kind == "reasoning":
        return  # a reasoning model's earlier thoughts: chat templates have no place for them
    elif kind == "item_reference":
        raise _bad(NOT_STORED.format(field="item_reference"), f"{where}.type")
    else:
        raise _bad(
            f"Unsupported input item type {json.dumps(kind)[:60]}: Hearth takes message, "
            "function_call, function_call_output and MCP (mcp_call, mcp_list_tools, "
            "mcp_approval_request, mcp_approval_response) items.",
            f"{where}.type",
        )


def messages(body: dict[str, Any], mcp: mcp_input.McpInput | None = None) -> list[dict[str, Any]]:
    """`instructions` and `input` as chat messages (MCP items noted in `mcp`)."""
    mcp = mcp if mcp is not None else mcp_input.McpInput()
    out: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        out.append({"role": "system", "content": _str(instructions, "instructions")})
    given = body.get("input")
    if isinstance(given, str):
        out.append({"role": "user", "content": given})
    elif isinstance(given, list):
        if len(given) > MAX_ITEMS:
            raise _bad(f"'input' may hold at most {MAX_ITEMS} items.", "input")
        for i, item in enumerate(given):
            _item(item, f"input[{i}]", out, mcp)
        mcp_input.finish(out, mcp)
    elif given is not None:
        raise _bad("'input' must be a string or a list of items.", "input")
    if not any(m["role"] != "system" for m in out):
        raise _bad("Give the model something to answer: 'input' is missing or empty.", "input")
    return out


# ---- text.format ----------------------------------------------------------------------


def response_format(text: Any) -> dict[str, Any] | None:
    """`text.format` -> the chat `response_format` (None for plain text)."""
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        schema: dict[str, Any] = {"name": str(fmt.get("name") or "format")[:64]}
        schema["schema"] = fmt["schema"]
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(
        '\'text.format\' must be {"type": "text"}, {"type": "json_object"} or '
        '{"type": "json_schema", "name": "...", "schema": {...}}.',
        "text.format",
    )


# ---- the request --------------------------------------------------------------------------


def _refuse_stored(body: dict[str, Any]) -> None:
    previous = body.get("previous_response_id")
    if previous is not None:
        shown = previous[:80] if isinstance(previous, str) else "?"
        raise _bad(NOT_PENDING.format(id=shown), "previous_response_id")
    for key in ("conversation", "prompt"):
        if body.get(key) is not None:
            raise _bad(NOT_STORED.format(field=key), key)


def call(body: dict[str, Any]) -> Call:
    """A Responses request body (a JSON object: `jsonbody.loads_object`) -> the
    chat-completions call (see the module docstring)."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            'Name the model to use: add "model": "<id>" (GET /v1/models lists the ids).',
            param="model",
        )
    _refuse_stored(body)
    found = mcp_input.McpInput()
    chat: dict[str, Any] = {"model": name, "messages": messages(body, found)}
    tools = tool_list.read(body)
    if found.decisions and not tools.mcp:
        first = found.decisions[0]
        raise _bad(
            f"This mcp_approval_response approves a call on MCP server "
            f"'{first.request.server if first.request else '?'}': add "
            '{"type": "mcp", "server_label": ...} for it to \'tools\' so Hearth can run it.',
            f"{first.where}.approval_request_id",
        )
    if tools.chat:
        chat["tools"] = tools.chat
        chat["parallel_tool_calls"] = _flag(body, "parallel_tool_calls", True)
    if tools.choice is not None:
        chat["tool_choice"] = tools.choice
    limits = {
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
    }
    chat.update({k: v for k, v in limits.items() if v is not None})
    max_tokens = _max_output_tokens(body)
    if max_tokens is not None:
        chat["max_tokens"] = max_tokens
    fmt = response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    stream = _flag(body, "stream", False)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    raw_keep = body.get("keep_alive")
    keep_alive = None if raw_keep is None else keep_alive_param(raw_keep)
    echo = _echo(body, tools.echo, max_tokens, limits)
    mcp = _mcp_part(body, tools, found) if tools.mcp else None
    return Call(name, chat, echo, stream=stream, keep_alive=keep_alive, names=tools.names,
                left_out=tools.left_out, mcp=mcp)  # fmt: skip


def _mcp_part(body: dict[str, Any], tools: tool_list.Tools, found: mcp_input.McpInput) -> McpPart:
    bound = body.get("max_tool_calls")
    if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
        raise _bad("'max_tool_calls' must be a whole number, 0 or more.", "max_tool_calls")
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    choice = body.get("tool_choice")
    forced = tools.chat if isinstance(choice, dict) and choice.get("type") == "function" else None
    return McpPart(tools.mcp, tools.mcp_choice, tools.every, found, bound, items, forced)


def _echo(
    body: dict[str, Any],
    tools: list[dict[str, Any]],
    max_tokens: int | None,
    limits: dict[str, float | None],
) -> Echo:
    """The request's own settings, as a Response repeats them (validated copies only)."""
    choice = body.get("tool_choice")
    instructions = body.get("instructions")  # checked by `messages`: a string or None
    fmt = body.get("text", {}).get("format") if isinstance(body.get("text"), dict) else None
    return {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": _metadata(body.get("metadata")),
        "parallel_tool_calls": _flag(body, "parallel_tool_calls", True),
        "store": _flag(body, "store", True),
        "temperature": limits["temperature"],
        "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
        "tool_choice": choice if choice is not None else "auto",
        "tools": tools,
        "top_p": limits["top_p"],
    }


# ---- the answer ---------------------------------------------------------------------------


def usage(raw: Any) -> Usage | None:
    """Chat usage -> Responses usage (input/output/total tokens and their details)."""
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached or 0), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": int(raw.get("total_tokens") or prompt + completion),
    }


def gathered_usage(gathered: Gathered) -> dict[str, Any] | None:
    """The engine's usage object as it sent it (None when it sent none)."""
    return gathered.usage.raw if gathered.usage is not None else None


def message_item(item_id: str, text: str, status: Status = "completed") -> MessageItem:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": (
            [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            if status != "in_progress"
            else []
        ),
    }


def call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: Status = "completed",
    names: tool_list.Names | None = None,
) -> FunctionCallItem:
    """A function_call item; a namespaced function's call named as OpenAI names it: its own
    name, and `namespace` beside it."""
    own, namespace = names.outward(name) if names is not None else (name, None)
    item: FunctionCallItem = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": own,
        "arguments": arguments,
        "status": status,
    }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def envelope(call: Call, response_id: str, created: int) -> Response:
    """A Response object without output (what `response.created` carries)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": call.name,
        "output": [],
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "truncation": "disabled",
        "usage": None,
        "user": None,
        **call.echo,
    }


def finished(
    base: Response, output: list[OutputItem], finish_reason: str | None, raw_usage: Any
) -> Response:
    """The final Response: status from the finish reason, output items, usage. An answer cut
    by max_output_tokens is "incomplete", and so is its last item (the one the cut ended), as
    OpenAI marks them."""
    cut = finish_reason == "length"
    if cut and output:
        output = [*output[:-1], {**output[-1], "status": "incomplete"}]  # type: ignore[list-item]
    return {
        **base,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "output": output,
        "usage": usage(raw_usage),
    }


def response(call: Call, reply: Mapping[str, Any], response_id: str, created: int) -> Response:
    """A whole chat completion (the engine's answer) -> a Response object: its text, then its
    tool calls in the engine's order."""
    answer = whole_answer(reply)
    output: list[OutputItem] = []
    if answer.text:
        output.append(message_item(new_id("msg"), answer.text))
    for tool_call in answer.tool_calls():
        call_id = tool_call.id or new_id("call")
        output.append(call_item(new_id("fc"), call_id, tool_call.name, tool_call.arguments,
                                names=call.names))  # fmt: skip
    base = envelope(call, response_id, created)
    return finished(base, output, answer.finish, gathered_usage(answer))
