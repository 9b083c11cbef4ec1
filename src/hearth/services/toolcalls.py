"""Tool calls Hearth enforces: `tool_choice` "required" or a named function.

llama.cpp parses tool calls itself (`tool_choice` "auto"), but it cannot force one: with
"required" its grammar lets free text come first (a small model writes prose until max_tokens),
and a named `tool_choice` object is refused (see ../shared/notes/engine-facts.md). So Hearth
does it in two engine requests on the same model:

1. `/apply-template` renders the conversation and the tools with the model's own chat template
   (the model sees the tools exactly as it was trained to);
2. `/v1/completions` continues that prompt under a JSON schema, so the output can only be a
   call: the arguments object of the named function (its name is already written into the
   prompt, in the template's own `<tool_call>` format where it has one), or, for "required"
   with several tools, `{"name": <one of them>, "arguments": {...}}`.

A template with no place for tools gets Hearth's tool prompt instead (`toolprompt.py`: step 1
renders the conversation with the tools in its system turn, and the prefix is Hearth's
`<tool_call>` format); "auto" on such a template is `toolauto.py`.

The output is read back into OpenAI's `tool_calls`, streamed as OpenAI streams them: a first
delta with the call's id and name, then the arguments as they are generated.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.engines.events import EventReader, Gathered

#: Chat-only fields a forced call does not send to `/v1/completions` (Hearth sets its own
#: constraint; `stop` could cut a call in half).
NOT_FORWARDED = frozenset(
    {
        "messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "stop",
        "stream_options", "n", "logprobs", "top_logprobs", "functions", "function_call",
        "grammar", "json_schema", "chat_template_kwargs", "max_completion_tokens",
    }
)  # fmt: skip
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_TRAILER = re.compile(r"\s*(\}\s*)?$")
# A template's own call format names the arguments `"arguments":` (Hermes, Qwen, Mistral) or
# `"parameters":` (Llama 3.1/3.2); inside a Jinja string the quotes may be escaped.
_KEY_PARAMETERS = re.compile(r'\\?"parameters\\?"\s*:')
_KEY_ARGUMENTS = re.compile(r'\\?"arguments\\?"\s*:')


def function_tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools, checked: each `{"type": "function", "function": {"name":
    ..., "parameters": {...}}}`."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        raise InvalidParameter(
            '"tools" must be a list of {"type": "function", ...}.', param="tools"
        )
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        params = function.get("parameters", {}) if isinstance(function, dict) else None
        if not isinstance(name, str) or not name or not isinstance(params, dict):
            raise InvalidParameter(
                f'tools[{i}] must be {{"type": "function", "function": {{"name": "...", '
                '"parameters": {JSON schema}}}.',
                param=f"tools[{i}]",
            )
    return tools


def forced_tools(body: Mapping[str, Any], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools one of which must be called ("required": all; a named function: that one),
    or [] when the model may answer in text ("auto", "none", absent)."""
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return []
    if choice == "required":
        return tools
    name = None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if not isinstance(name, str):
        raise InvalidParameter(
            'tool_choice must be "auto", "none", "required" or {"type": "function", '
            '"function": {"name": "..."}}.',
            param="tool_choice",
        )
    for tool in tools:
        if tool["function"]["name"] == name:
            return [tool]
    raise InvalidParameter(
        f"tool_choice names the function '{name[:100]}', which is not in \"tools\". Add it "
        "to tools or name one of them.",
        param="tool_choice",
    )


def arguments_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The schema a call's arguments must match: the tool's parameters, closed to properties
    it does not list (a model left free invents extra ones)."""
    params = dict(tool["function"].get("parameters") or {"type": "object"})
    if params.get("type") == "object" and "properties" in params:
        params.setdefault("additionalProperties", False)
    return params


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The schema of `{"name": ..., "arguments": ...}` for any one of `tools`. Each tool's
    `$defs` (pydantic writes them) move to the root, renamed per tool, since a `$ref` only
    resolves from the root of the whole schema."""
    root_defs: dict[str, Any] = {}
    options = []
    for i, tool in enumerate(tools):
        arguments = arguments_schema(tool)
        defs = arguments.pop("$defs", None)
        prefix = f"t{i}_"
        if isinstance(defs, dict):
            root_defs.update({prefix + str(k): _renamed_refs(v, prefix) for k, v in defs.items()})
            arguments = _renamed_refs(arguments, prefix)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool["function"]["name"]}, "arguments": arguments},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    if root_defs:
        schema = {**schema, "$defs": root_defs}
    return schema


def _renamed_refs(node: Any, prefix: str) -> Any:
    """`node` with every `#/$defs/X` reference pointing at `#/$defs/<prefix>X`."""
    if isinstance(node, dict):
        out = {k: _renamed_refs(v, prefix) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/$defs/" + prefix + ref[len("#/$defs/") :]
        return out
    if isinstance(node, list):
        return [_renamed_refs(v, prefix) for v in node]
    return node


def call_prefix(template: str, name: str | None) -> str:
    """What the prompt ends with before the constrained output: the template's own call opener
    (`<tool_call>` for Hermes/Qwen-style templates) and, for a named function, the call's
    start up to its arguments, in the key the template uses ("arguments" or "parameters")."""
    opener = "<tool_call>\n" if "<tool_call>" in template else ""
    if name is None:
        return opener
    llama3 = _KEY_PARAMETERS.search(template) and not _KEY_ARGUMENTS.search(template)
    key = "parameters" if llama3 else "arguments"
    return f'{opener}{{"name": {json.dumps(name)}, "{key}": '


class CallReader:
    """Reads a generated call as it grows: the function's name once it is complete, then the
    arguments' text in pieces, holding back only what may be the wrapper's closing brace."""

    def __init__(self, name: str | None) -> None:
        self.name = name  # known up front for a named function: the output is the arguments
        self.text = ""
        self._start: int | None = 0 if name is not None else None
        self._sent = 0

    def feed(self, piece: str) -> str:
        """Add generated text; return the arguments text that can be sent now."""
        self.text += piece
        if self._start is None:
            match = _HEADER.match(self.text)
            if match is None:
                return ""
            self.name = json.loads(f'"{match.group(1)}"')
            self._start = self._sent = match.end()
        if self.name is not None and self._start == 0:
            out, self._sent = self.text[self._sent :], len(self.text)
            return out
        hold = _TRAILER.search(self.text, self._sent)
        end = hold.start() if hold is not None else len(self.text)
        out, self._sent = self.text[self._sent : end], max(self._sent, end)
        return out

    def finish(self) -> str:
        """The arguments text not yet sent, without the wrapper's closing brace."""
        if self._start is None:
            return ""
        rest = self.text[self._sent :]
        if self._start > 0:
            rest = _TRAILER.sub("", rest, count=1)
        self._sent = len(self.text)
        return rest

    @property
    def arguments(self) -> str:
        if self._start is None:
            return ""
        body = self.text[self._start :]
        return (_TRAILER.sub("", body, count=1) if self._start > 0 else body).strip()


def call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def finish_reason(engine_reason: Any, reader: CallReader) -> str:
    return "tool_calls" if engine_reason == "stop" and reader.name is not None else "length"


def whole_answer(completion: Mapping[str, Any], reader: CallReader) -> dict[str, Any]:
    """The engine's `/v1/completions` answer as a chat completion carrying the call. Its text
    and finish are read through the shared parser; its counters pass on as the engine wrote them."""
    said = Gathered()
    for event in EventReader().whole(completion):
        said.add(event)
    reader.feed(said.text)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if reader.name is not None:
        message["tool_calls"] = [
            {
                "id": call_id(),
                "type": "function",
                "function": {"name": reader.name, "arguments": reader.arguments},
            }
        ]
    else:
        message["content"] = reader.text
    body = {
        "id": chat_id(completion),
        "object": "chat.completion",
        "created": completion.get("created") or int(time.time()),
        "model": completion.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(said.finish, reader),
            }
        ],
    }
    for key in ("usage", "timings", "system_fingerprint"):
        if key in completion:
            body[key] = completion[key]
    return body


def chat_id(chunk: Mapping[str, Any]) -> str:
    raw = str(chunk.get("id") or "")
    return raw if raw.startswith("chatcmpl-") else "chatcmpl-" + secrets.token_hex(12)


async def stream_answer(
    chunks: AsyncGenerator[dict[str, Any], None], reader: CallReader, *, include_usage: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """The engine's completion chunks as chat completion chunks carrying the call. What each
    chunk says (text, finish, usage, timings, an error) is read through the shared parser; only
    the head (id, created, model) is the chunk's own."""
    parse = EventReader()
    head: dict[str, Any] | None = None
    ident = call_id()
    announced = False
    async for chunk in chunks:
        said = Gathered()
        for event in parse.chunk(chunk):
            said.add(event)
        if said.failure is not None:
            yield chunk  # the engine's error event, as it wrote it
            return
        if head is None:
            head = {"id": chat_id(chunk), "object": "chat.completion.chunk",
                    "created": chunk.get("created") or int(time.time()),
                    "model": chunk.get("model")}  # fmt: skip
            yield delta(head, {"role": "assistant", "content": None})
        arguments = reader.feed(said.text)
        if said.finish is not None:
            arguments += reader.finish()
        if reader.name is not None and not announced:
            announced = True
            call = {"index": 0, "id": ident, "type": "function",
                    "function": {"name": reader.name, "arguments": ""}}  # fmt: skip
            yield delta(head, {"tool_calls": [call]})
        if arguments and announced:
            yield delta(head, {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
        if said.finish is not None:
            if not announced:  # cut off before a name: say what came out
                yield delta(head, {"content": reader.text})
            yield delta(head, {}, finish=finish_reason(said.finish, reader))
        if include_usage and said.usage is not None:
            usage = {**head, "choices": [], "usage": said.usage.raw}
            if said.timings is not None:
                usage["timings"] = said.timings
            yield usage


def delta(
    head: Mapping[str, Any], delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**head, "choices": [choice]}
