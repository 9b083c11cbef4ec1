"""Today's Jan message shapes (desktop 0.6 to 0.8), read as one: reasoning and tool calls.

Jan has kept a model's reasoning and its tool calls in three places over time:
- the core types' content parts: `{"type": "reasoning", "text": {...}}` and
  `{"type": "tool_call", "tool_call_id", "tool_name", "input", "output"}`;
- today's web app (web-app/src/lib/messages.ts, `convertUIMessageToThreadMessage`): reasoning
  inline at the start of the text part as `<think>...</think>`, and tool calls in
  `metadata.tool_calls = [{"tool": {"id", "type": "function", "function": {"name",
  "arguments"}}, "response", "state"}]`.
Pure functions over a stored message (a stranger's data: any field may be any JSON), used by
the composer (what the model sees of an earlier turn) and the page's view.
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)
_OPEN_THINK = re.compile(r"^\s*<think>", re.DOTALL)


def split_think(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a text that starts with `<think>...</think>` (Jan's inline
    reasoning); an unclosed `<think>` (an answer stopped while thinking) is all reasoning."""
    match = _THINK.match(text)
    if match:
        return match.group(1).strip(), text[match.end() :]
    if _OPEN_THINK.match(text):
        return _OPEN_THINK.sub("", text, count=1).strip(), ""
    return "", text


def with_think(reasoning: str, text: str) -> str:
    """The text part Jan's web app writes: reasoning inline before the answer."""
    return f"<think>{reasoning}</think>{text}" if reasoning else text


def _arguments(value: Any) -> str:
    """A call's arguments as the JSON string OpenAI's shape wants (an object is encoded; a
    string that is not JSON is wrapped, so the engine's parser never refuses the history)."""
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            return json.dumps({"input": value}) if value.strip() else "{}"
    if value is None:
        return "{}"
    return json.dumps(value, ensure_ascii=False)


def response_text(response: Any) -> str | None:
    """A tool's result as text for the model (Jan's ToolResult `{content: [{text}], error}`, a
    string, or any JSON); None when the call has no result yet."""
    if response is None:
        return None
    if isinstance(response, str):
        return response
    if isinstance(response, dict):
        content = response.get("content")
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            joined = "\n".join(t for t in texts if isinstance(t, str))
            if joined:
                return joined
        if isinstance(response.get("error"), str) and response["error"]:
            return f"Tool execution failed: {response['error']}"
    return json.dumps(response, ensure_ascii=False)


def tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool call of a message, as `{id, name, arguments (JSON string), result (text or
    None), state}`: `metadata.tool_calls` first, then older `tool_call` content parts."""
    found: list[dict[str, Any]] = []
    metadata = message.get("metadata")
    listed = metadata.get("tool_calls") if isinstance(metadata, dict) else None
    for item in listed if isinstance(listed, list) else []:
        tool = item.get("tool") if isinstance(item, dict) else None
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(function, dict):
            continue
        if not isinstance(function.get("name"), str):
            continue
        state = item.get("state")
        found.append(
            {
                "id": tool.get("id") if isinstance(tool.get("id"), str) else None,
                "name": function["name"],
                "arguments": _arguments(function.get("arguments")),
                "result": response_text(item.get("response")),
                "state": state if isinstance(state, str) else None,
            }
        )
    content = message.get("content")
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict) or part.get("type") != "tool_call":
            continue
        if not isinstance(part.get("tool_name"), str):
            continue
        ident = part.get("tool_call_id")
        found.append(
            {
                "id": ident if isinstance(ident, str) else None,
                "name": part["tool_name"],
                "arguments": _arguments(part.get("input")),
                "result": response_text(part.get("output")),
                "state": None,
            }
        )
    return found


def jan_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One entry of `metadata.tool_calls` as Jan's web app writes it (no result yet)."""
    return {
        "tool": {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        },
        "response": None,
        "state": "pending",
    }


def legacy_model_id(value: str) -> str:
    """Jan's legacy llama.cpp ids `author:repo:file` read as `author/repo` (Jan's own
    normalisation); any other id unchanged."""
    parts = value.split(":")
    if len(parts) >= 3 and all(parts[:2]):
        return f"{parts[0]}/{parts[1]}"
    return value
