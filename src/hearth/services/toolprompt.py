"""Hearth's own tool prompt, for a model whose chat template has no place for tools.

Such a template (SmolLM2's, most base and small chat models', every Jan prompt format) drops
`tools` and cannot show an assistant's `tool_calls` or a `tool` result. So Hearth writes them
as text the template can show:

- the tools go into the system turn (after the conversation's own system message, if any): one
  line of JSON per tool (name, description, parameters) and the exact call format, Hermes's
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, which many small models have seen;
- an earlier assistant call becomes that text in the assistant's turn, and `tool` results
  become a user turn of `<tool_response>` blocks (the one role every template knows);
- the conversation is then rendered by the model's own template (`/apply-template`, messages
  only), and the call is read from a constrained continuation (`toolcalls.py`, `toolauto.py`).

A tool's name, description and schema are a stranger's data: they are written as JSON with
`<` and `>` escaped (`\\u003c`, still the same JSON), so no tool definition can spell a special
token such as `<|im_end|>` and end the system turn early. The conversation's own text is
rendered as the template renders any message.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from hearth.core.errors import InvalidParameter

OPENER = "<tool_call>"
#: How the instructions show a call; `toolcalls.call_prefix` reads the opener from it.
CALL_SHAPE = f'{OPENER}\n{{"name": "<function name>", "arguments": {{<arguments>}}}}\n</tool_call>'
_INTRO = (
    "You can call functions to help you answer. Each function is described by one line of "
    "JSON: its name, what it does, and a JSON schema of its arguments."
)
_HOW = (
    "To call a function, write exactly this, with the arguments matching its schema, and "
    f"write nothing after it:\n{CALL_SHAPE}\n"
    "A function's result comes back to you in a <tool_response> block. When no function is "
    "needed, answer in plain text."
)


def _json(value: Any) -> str:
    """JSON that cannot spell a special token: `<` and `>` escaped (the same JSON value)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def instructions(tools: list[dict[str, Any]]) -> str:
    """The system turn's text that shows `tools` (checked by `toolcalls.function_tools`)."""
    lines = [_INTRO, "<tools>"]
    for tool in tools:
        function = tool["function"]
        shown: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str) and function["description"]:
            shown["description"] = function["description"]
        shown["parameters"] = function.get("parameters") or {"type": "object"}
        lines.append(_json(shown))
    lines += ["</tools>", _HOW]
    return "\n".join(lines)


def _text(content: Any) -> str:
    """A message's text: a string, or the text of its parts (other parts are not text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _call_text(call: Any) -> str:
    """One earlier call as the model would have written it."""
    function = call.get("function") if isinstance(call, dict) else None
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # else shown as the string it is
            arguments = json.loads(arguments)
    shown = {"name": function.get("name"), "arguments": arguments}
    return f"{OPENER}\n{json.dumps(shown, ensure_ascii=False)}\n</tool_call>"


def conversation(messages: list[Any], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` as a template without tools can show them (see the module)."""
    out: list[dict[str, Any]] = []
    system = instructions(tools)
    rest = messages
    if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
        own = _text(messages[0].get("content"))
        system = f"{own}\n\n{system}" if own else system
        rest = messages[1:]
    out.append({"role": "system", "content": system})
    for i, message in enumerate(rest, start=len(messages) - len(rest)):
        if not isinstance(message, Mapping):
            raise InvalidParameter(
                f'messages[{i}] must be an object: {{"role": ..., "content": ...}}.',
                param=f"messages[{i}]",
            )
        role = message.get("role")
        if role == "tool":
            block = f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>"
            last = out[-1] if isinstance(out[-1], dict) else {}
            if last.get("role") == "user" and last.get("_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_results": True})
        elif role == "assistant" and message.get("tool_calls"):
            calls = message["tool_calls"] if isinstance(message["tool_calls"], list) else []
            said = [_text(message.get("content"))] + [_call_text(c) for c in calls]
            out.append({"role": "assistant", "content": "\n".join(s for s in said if s)})
        else:
            out.append(dict(message))
    for message in out:
        if isinstance(message, dict):
            message.pop("_results", None)
    return out
