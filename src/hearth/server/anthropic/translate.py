"""Anthropic's Messages requests and answers <-> OpenAI's chat completions, as pure functions.

The engine speaks OpenAI's chat completions; Anthropic's clients (the SDK, Claude Code) speak
Messages. This module is the whole mapping, with no I/O and no clock, so it is unit-tested
without a server:

- requests: `messages_call` turns a Messages body into the chat-completions body the engine
  gets. Only the documented fields are read, each type-checked and bounded; unknown fields
  (`metadata`, `thinking` of any type, `cache_control`, `context_management`, `output_config`,
  ...) are ignored, as Anthropic does for a model without those features. Nothing in the
  body becomes an engine flag. System messages inside `messages` are accepted anywhere
  (`_messages`).
- answers: `parse_input` reads a tool call's arguments as Anthropic's `input`; the answer
  itself is written from the engine's typed events by `stream.Assembler`. Stop sequences are
  taken here (`Call.stops`) and matched there, not by the engine (see `stream.py`).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import InvalidParameter, InvalidRequest
from hearth.core.keepalive import keep_alive_param

MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_TOOLS = 256
MAX_MESSAGES = 10_000
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})  # the model's own, not replayed


@dataclass
class Call:
    """One Messages request, translated: the OpenAI body and what Hearth does itself."""

    name: str  # the model as the client named it (echoed back)
    body: dict[str, Any]
    stream: bool = False
    keep_alive: float | None = None
    stops: list[str] = field(default_factory=list)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# ---- requests -----------------------------------------------------------------------------


def _number(body: dict[str, Any], key: str, *, integer: bool = False) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or (integer and not float(value).is_integer()):
        want = "an integer" if integer else "a number"
        raise InvalidParameter(f"{key}: must be {want}.", param=key)
    return int(value) if integer else float(value)


def _text_of(blocks: Any, where: str) -> str:
    """A string, or a list of text blocks (system prompts, tool results) joined by newlines."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise InvalidParameter(f"{where}: must be a string or a list of text blocks.", param=where)
    texts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidParameter(f"{where}.{i}: only text blocks are accepted here.", param=where)
        if not isinstance(block.get("text"), str):
            raise InvalidParameter(f"{where}.{i}.text: must be a string.", param=where)
        texts.append(block["text"])
    return "\n".join(texts)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An Anthropic base64 image -> an OpenAI image_url part with a data: URL. URLs are not
    fetched (Hearth does not reach out to addresses a request names)."""
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise InvalidParameter(
            f"{where}.source: only base64 images are supported "
            '({"type": "base64", "media_type": "image/png", "data": "..."}).',
            param=where,
        )
    media, data = source.get("media_type"), source.get("data")
    if media not in IMAGE_TYPES or not isinstance(data, str) or not data:
        raise InvalidParameter(
            f"{where}.source: media_type must be one of {sorted(IMAGE_TYPES)} and data a "
            "non-empty base64 string.",
            param=where,
        )
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An assistant's tool_use block -> an OpenAI tool call (arguments as a JSON string)."""
    name, call_id, arguments = block.get("name"), block.get("id"), block.get("input", {})
    if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(arguments, dict):
        raise InvalidParameter(
            f"{where}: a tool_use block needs a string 'id' and 'name' and an object 'input'.",
            param=where,
        )
    text = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def _result_text(content: Any, where: str) -> str:
    """A tool result's content as the text an OpenAI `tool` message holds: text blocks as they
    are; a `tool_reference` (Claude Code's ToolSearch loads a deferred tool) names the tool;
    other blocks (an image a Read tool returned, a document) are named, not sent, since a
    tool message carries text only."""
    if not isinstance(content, list):
        return _text_of(content, where)
    texts = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of([block], f"{where}.{i}"))
        elif kind == "tool_reference" and isinstance(block.get("tool_name"), str):
            texts.append(f"Tool loaded: {block['tool_name']}")
        elif isinstance(kind, str) and kind.isidentifier():
            texts.append(f"[{kind[:40]} left out: this model reads text only here]")
        else:
            raise InvalidParameter(f"{where}.{i}: must be a content block.", param=where)
    return "\n".join(texts)


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A user's tool_result block -> an OpenAI `tool` message (an error result says so)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise InvalidParameter(f"{where}.tool_use_id: must be a string.", param=where)
    content = block.get("content", "")
    text = _result_text(content, f"{where}.content") if content else ""
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise InvalidParameter(f"{where}: must be a string or a list of blocks.", param=where)
    return content


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first (OpenAI wants them right after the calls), then one
    user message with its text and images."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}.{i}"
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            tools.append(_tool_result(block, at))
        elif kind not in SKIPPED_BLOCKS:
            raise _unsupported_block(kind, at, "text, image or tool_result")
    if not parts:
        return tools
    if all(p["type"] == "text" for p in parts):
        return [*tools, {"role": "user", "content": "\n".join(p["text"] for p in parts)}]
    return [*tools, {"role": "user", "content": parts}]


def _assistant(content: Any, where: str) -> dict[str, Any]:
    """An assistant turn: its text joined, its tool_use blocks as OpenAI tool calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block.get("type"), f"{where}.{i}"
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in SKIPPED_BLOCKS:
            raise _unsupported_block(kind, at, "text or tool_use")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        out["tool_calls"] = calls
    return out


def _unsupported_block(kind: Any, where: str, allowed: str) -> InvalidParameter:
    shown = json.dumps(kind)[:60]
    return InvalidParameter(
        f"{where}: content block type {shown} is not supported here; use {allowed}.", param=where
    )


def _fold(out: list[dict[str, Any]], text: str) -> None:
    """A system message met inside the conversation, folded into a user turn as text wrapped
    in `<system>` tags: many chat templates take a system message only first (SmolLM2's,
    Llama's, Gemma's) and some raise on any other, so one in the middle cannot be sent as
    one. It joins the user turn it follows, else it waits (`pending`) for the next user turn
    (`_join_user`). The prefix before it stays as it was (the engine's prompt cache still
    holds it), and turns still alternate for templates that insist."""
    note = f"<system>\n{text}\n</system>"
    last = out[-1] if out else None
    if last is None or last["role"] != "user":
        out.append({"role": "user", "content": note, "pending": True})
    elif isinstance(last["content"], str):
        last["content"] = f"{last['content']}\n\n{note}"
    else:
        last["content"] = [*last["content"], {"type": "text", "text": note}]


def _join_user(out: list[dict[str, Any]], turn: list[dict[str, Any]]) -> None:
    """A user turn's messages (tool results, then the user's message) after `out`. A folded
    system note waiting for it goes after the tool results (they must follow the assistant's
    calls) and before the user's own text, in one user message."""
    if not out or out[-1].get("pending") is None:
        out.extend(turn)
        return
    note = out.pop()
    del note["pending"]
    tools = [m for m in turn if m["role"] == "tool"]
    users = [m for m in turn if m["role"] != "tool"]
    out.extend(tools)
    if not users:
        out.append(note)
        return
    first = users[0]
    if isinstance(first["content"], str):
        merged: Any = f"{note['content']}\n\n{first['content']}"
    else:
        merged = [{"type": "text", "text": note["content"]}, *first["content"]]
    out.append({**first, "content": merged})


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation as OpenAI messages. System text before the first turn (Anthropic's
    `system`, then any leading system messages) is the one system message, first; a system
    message later in the conversation (Claude Code's `mid-conversation-system` beta puts one
    right after the first user message) is folded into a user turn (`_fold`)."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages: Field required (a non-empty list).", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise InvalidParameter(f"messages: at most {MAX_MESSAGES} messages.", param="messages")
    system = [_text_of(body["system"], "system")] if body.get("system") else []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            _join_user(out, _user(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            out.append(_assistant(message.get("content"), f"{where}.content"))
        elif role == "system":
            text = _text_of(message.get("content"), f"{where}.content")
            if not out:
                system.append(text)
            elif text:
                _fold(out, text)
        else:
            raise InvalidParameter(
                f"{where}.role: must be 'user', 'assistant' or 'system'.", param=where
            )
    if not out:
        raise InvalidRequest(
            "messages: needs a user or assistant message (system messages alone are not a "
            "conversation).",
            param="messages",
        )
    for message in out:
        message.pop("pending", None)
    prompt = "\n\n".join(text for text in system if text)
    head = [{"role": "system", "content": prompt}] if prompt else []
    return [*head, *out]


def _referenced(messages: list[Any]) -> set[str]:
    """The tools a `tool_reference` in a tool result has loaded (Claude Code's ToolSearch)."""
    names = set()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            inner = block.get("content") if isinstance(block, dict) else None
            for ref in inner if isinstance(inner, list) else []:
                if isinstance(ref, dict) and ref.get("type") == "tool_reference":
                    names.add(str(ref.get("tool_name")))
    return names


def _tools(raw: Any, loaded: set[str]) -> list[dict[str, Any]]:
    """Anthropic's client tools -> OpenAI function tools. Anthropic's server tools (web search,
    code execution, ...) run on Anthropic's side and cannot run here: refused by name. A tool
    with `defer_loading: true` is left out until a tool_reference has loaded it (`loaded`),
    as Anthropic keeps it out of the model's context."""
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise InvalidParameter(f"tools: must be a list of at most {MAX_TOOLS}.", param="tools")
    out = []
    for i, tool in enumerate(raw):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise InvalidParameter(f"{where}: must be an object.", param=where)
        if tool.get("type") not in (None, "custom"):
            shown = json.dumps(tool.get("type"))[:60]
            raise InvalidParameter(
                f"{where}: server tool type {shown} is not available on a local model; define "
                "the tool with name, description and input_schema.",
                param=where,
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not TOOL_NAME.match(name) or not isinstance(schema, dict):
            raise InvalidParameter(
                f"{where}: needs a 'name' (letters, digits, _ or -, up to 128) and an "
                "'input_schema' object.",
                param=where,
            )
        if tool.get("defer_loading") is True and name not in loaded:
            continue
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(raw: Any, tools: list[dict[str, Any]], body: dict[str, Any]) -> None:
    """Anthropic's tool_choice -> OpenAI's, in `body`. `any` is `required`; a named tool is
    `required` with only that tool offered, since the engine refuses a named tool_choice."""
    if raw is None:
        return
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidParameter(
            'tool_choice: must be {"type": "auto" | "any" | "tool" | "none"}.',
            param="tool_choice",
        )
    if raw.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False
    if kind == "tool":
        name = raw.get("name")
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            message = "tool_choice.name: must name one of 'tools'."
            raise InvalidParameter(message, param="tool_choice")
        body["tools"] = chosen
    body["tool_choice"] = {"auto": "auto", "any": "required", "tool": "required"}.get(kind, "none")


def _stops(raw: Any) -> list[str]:
    if raw is None:
        return []
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_STOPS
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in raw)
    ):
        raise InvalidParameter(
            f"stop_sequences: a list of at most {MAX_STOPS} non-empty strings of up to "
            f"{MAX_STOP_CHARS} characters.",
            param="stop_sequences",
        )
    return list(raw)


def messages_call(body: dict[str, Any]) -> Call:
    """POST /v1/messages -> chat/completions (see the module docstring). The body is already
    known to be a JSON object (`jsonbody.loads_object`)."""
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model: Field required.", param="model")
    max_tokens = _number(body, "max_tokens", integer=True)
    if max_tokens is None or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (a positive integer).", param="max_tokens")
    out: dict[str, Any] = {"model": name.strip(), "messages": _messages(body)}
    out["max_tokens"] = max_tokens
    for key in ("temperature", "top_p"):
        value = _number(body, key)
        if value is not None:
            out[key] = value
    top_k = _number(body, "top_k", integer=True)
    if top_k is not None:
        out["top_k"] = top_k
    tools = _tools(body["tools"], _referenced(body["messages"])) if body.get("tools") else []
    if tools:
        out["tools"] = tools
        _tool_choice(body.get("tool_choice"), tools, out)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidParameter("stream: must be true or false.", param="stream")
    out["stream"] = True  # always streamed from the engine: one path, stop sequences seen live
    out["stream_options"] = {"include_usage": True}
    stops = _stops(body.get("stop_sequences"))
    if stops:  # Hearth stops the answer itself; llama.cpp's timings in every chunk say the
        out["timings_per_token"] = True  # prompt's size then (see stream.Assembler.counts)
    raw_keep = body.get("keep_alive")  # Hearth's extension, as on /v1/chat/completions
    keep = None if raw_keep is None else keep_alive_param(raw_keep)
    return Call(name.strip(), out, stream, keep, stops)


def count_body(call: Call) -> dict[str, Any]:
    """The chat body that counts a request's input tokens: the same prompt, one token out
    (the engine's `usage.prompt_tokens` is then the exact count, template and tools included)."""
    body = {k: v for k, v in call.body.items() if k not in ("stream", "stream_options")}
    body.update(max_tokens=1, stream=False)
    return body


# ---- answers ------------------------------------------------------------------------------


def parse_input(text: str) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as Anthropic's `input` object; {} when the
    model wrote something that is not a JSON object."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
