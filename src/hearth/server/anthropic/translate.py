"""Anthropic's Messages requests and answers <-> OpenAI's chat completions, as pure functions.

The engine speaks OpenAI's chat completions; Anthropic's clients (the SDK, Claude Code) speak
Messages. This module is the whole mapping, with no I/O and no clock, so it is unit-tested
without a server:

- requests: `messages_call` turns a Messages body into the chat-completions body the engine
  gets. Only the documented fields are read, each type-checked and bounded; unknown fields
  (`metadata`, `thinking`, `cache_control`, ...) are ignored, as a proxy to a model without
  them must. Nothing in the body becomes an engine flag.
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


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A user's tool_result block -> an OpenAI `tool` message (an error result says so)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise InvalidParameter(f"{where}.tool_use_id: must be a string.", param=where)
    content = block.get("content", "")
    text = _text_of(content, f"{where}.content") if content else ""
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


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages: Field required (a non-empty list).", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise InvalidParameter(f"messages: at most {MAX_MESSAGES} messages.", param="messages")
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": _text_of(system, "system")})
    for i, message in enumerate(raw):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            out.extend(_user(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            out.append(_assistant(message.get("content"), f"{where}.content"))
        else:
            raise InvalidParameter(f"{where}.role: must be 'user' or 'assistant'.", param=where)
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    """Anthropic's client tools -> OpenAI function tools. Anthropic's server tools (web search,
    code execution, ...) run on Anthropic's side and cannot run here: refused by name."""
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
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        _tool_choice(body.get("tool_choice"), out["tools"], out)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidParameter("stream: must be true or false.", param="stream")
    out["stream"] = True  # always streamed from the engine: one path, stop sequences seen live
    out["stream_options"] = {"include_usage": True}
    raw_keep = body.get("keep_alive")  # Hearth's extension, as on /v1/chat/completions
    keep = None if raw_keep is None else keep_alive_param(raw_keep)
    return Call(name.strip(), out, stream, keep, _stops(body.get("stop_sequences")))


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
