"""`tool_choice` "auto" in Hearth's own tool format: the model may answer or call.

Two engine requests, the second only when the model calls:

1. `/v1/completions` of the prompt (`toolprompt.py`), streamed: its text is passed on as
   content deltas as it comes, except a tail that may be the start of the call opener
   (`<tool_call>`), held until it is clearly not. When the opener is complete, the first answer
   is closed (the engine stops generating) and nothing after the opener is shown.
2. `/v1/completions` of prompt + text + opener under the call's JSON schema (`toolcalls.py`):
   the call, streamed as OpenAI streams tool calls. The engine's prompt cache holds the first
   request's prompt and what it generated, so this one reads only the few tokens after them.

Why not a stop word: llama.cpp's `/v1/completions` answers `finish_reason: "stop"` for a stop
word and for the end of the turn alike, so "the model called" could not be told from "the model
finished". Why not llama.cpp's lazy grammar (`grammar_lazy`, `grammar_triggers`): it takes a
GBNF grammar that starts with the trigger, and the engine converts a JSON schema only into a
grammar for the whole output; Hearth would carry its own copy of that converter.

One call per turn: `parallel_tool_calls` is accepted, and a model that wants a second call makes
it in the next turn (after the first one's result).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from hearth.core.errors import EngineError, HearthError
from hearth.engines.events import EventReader, Gathered, engine_error
from hearth.engines.proxy import Answer
from hearth.services import toolcalls
from hearth.services.toolprompt import OPENER

#: Opens the constrained continuation after `text` (the answer's text before the opener), of
#: which the engine generated `tokens` tokens (the opener's included).
OpenCall = Callable[[str, int], Awaitable[Answer]]
Chunks = Callable[[Answer], AsyncGenerator[dict[str, Any], None]]


class OpenerWatch:
    """Free text as it grows: what can be shown now, and whether the call opener was written."""

    def __init__(self, opener: str = OPENER) -> None:
        self.opener = opener
        self.text = ""  # up to the opener, once it is written
        self.called = False
        self._sent = 0

    def feed(self, piece: str) -> str:
        """Add generated text; return the text that can be shown now."""
        if self.called:
            return ""
        self.text += piece
        at = self.text.find(self.opener, self._sent)
        if at >= 0:
            self.called = True
            self.text = self.text[:at]
            return self._upto(at)
        keep = 0
        for size in range(min(len(self.opener) - 1, len(self.text) - self._sent), 0, -1):
            if self.text.endswith(self.opener[:size]):
                keep = size
                break
        return self._upto(len(self.text) - keep)

    def finish(self) -> str:
        """The held tail, at the end of an answer that made no call."""
        return "" if self.called else self._upto(len(self.text))

    def _upto(self, end: int) -> str:
        out = self.text[self._sent : end]
        self._sent = max(self._sent, end)
        return out


class _Counts:
    """The first request's token counts, from its per-token timings (it may be closed before
    its usage comes)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.generated = 0

    def read(self, timings: dict[str, Any] | None) -> None:
        if isinstance(timings, dict):
            self.prompt = int(timings.get("cache_n") or 0) + int(timings.get("prompt_n") or 0)
            self.generated = int(timings.get("predicted_n") or 0)


async def auto_chunks(
    first: Answer, chunks: Chunks, open_call: OpenCall, *, include_usage: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """The chat completion chunks of an "auto" answer: text, then a call if the model makes
    one (see the module). `chunks` parses an answer's stream into engine chunks."""
    parse, watch, counts = EventReader(), OpenerWatch(), _Counts()
    head: dict[str, Any] = {}
    said = Gathered()
    async with aclosing(chunks(first)) as stream:
        async for chunk in stream:
            said = Gathered()
            for event in parse.chunk(chunk):
                said.add(event)
            if said.failure is not None:
                yield chunk  # the engine's error event, as it wrote it
                return
            if not head:
                head = _head(chunk)
                yield toolcalls.delta(head, {"role": "assistant", "content": ""})
            counts.read(said.timings)
            shown = watch.feed(said.text) + (watch.finish() if said.finish else "")
            if shown:
                yield toolcalls.delta(head, {"content": shown})
            if watch.called or said.finish is not None:
                break
    if not watch.called:
        head = head or _head({})  # (an engine that closed without a word)
        held = watch.finish() if said.finish is None else ""  # a tail kept as a maybe-opener
        if held:
            yield toolcalls.delta(head, {"content": held})
        yield toolcalls.delta(head, {}, finish=said.finish or "stop")
        if include_usage and said.usage is not None:
            yield {**head, "choices": [], "usage": said.usage.raw}
        return
    await first.close()  # the engine stops at the opener
    try:
        call = await open_call(watch.text, counts.generated)
    except HearthError as exc:  # the stream is under way: the refusal is its error event
        yield {"error": exc.to_openai()["error"]}
        return
    try:
        async for out in _call_chunks(call, chunks, head, counts, include_usage=include_usage):
            yield out
    finally:
        await call.close()


async def _call_chunks(
    call: Answer, chunks: Chunks, head: dict[str, Any], counts: _Counts, *, include_usage: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """The constrained continuation's chunks as the answer's tool call."""
    parse, reader = EventReader(), toolcalls.CallReader(None)
    announced = sent = False
    async with aclosing(chunks(call)) as stream:
        async for chunk in stream:
            said = Gathered()
            for event in parse.chunk(chunk):
                said.add(event)
            if said.failure is not None:
                yield chunk
                return
            arguments = reader.feed(said.text) + (reader.finish() if said.finish else "")
            if not sent:  # the space after `"arguments":` may come in a piece of its own
                arguments = arguments.lstrip()
                sent = bool(arguments)
            if reader.name is not None and not announced:
                announced = True
                first = {"index": 0, "id": toolcalls.call_id(), "type": "function",
                         "function": {"name": reader.name, "arguments": ""}}  # fmt: skip
                yield toolcalls.delta(head, {"tool_calls": [first]})
            if arguments and announced:
                more = {"index": 0, "function": {"arguments": arguments}}
                yield toolcalls.delta(head, {"tool_calls": [more]})
            if said.finish is not None:
                if not announced:  # cut off before a name: say what came out
                    yield toolcalls.delta(head, {"content": OPENER + reader.text})
                yield toolcalls.delta(head, {}, finish=toolcalls.finish_reason(said.finish, reader))
            if include_usage and said.usage is not None:
                written = counts.generated + (said.usage.completion_tokens or 0)
                usage = {"prompt_tokens": counts.prompt, "completion_tokens": written,
                         "total_tokens": counts.prompt + written}  # fmt: skip
                out = {**head, "choices": [], "usage": usage}
                if said.timings is not None:  # the call's own: its `cache_n` shows the reuse
                    out["timings"] = said.timings
                yield out


def _head(chunk: dict[str, Any]) -> dict[str, Any]:
    return {"id": toolcalls.chat_id(chunk), "object": "chat.completion.chunk",
            "created": chunk.get("created") or int(time.time()),
            "model": chunk.get("model")}  # fmt: skip


async def whole(chunks: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any]:
    """An "auto" answer's chunks (with usage) as one chat completion."""
    head: dict[str, Any] = {}
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    finish: Any = None
    usage: Any = None
    async with aclosing(chunks):
        async for chunk in chunks:
            failure = engine_error(chunk)
            if failure is not None:
                raise EngineError(f"The engine failed: {failure}")
            head = head or {k: chunk.get(k) for k in ("id", "created", "model")}
            usage = chunk.get("usage", usage)
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text.append(delta.get("content") or "")
                for piece in delta.get("tool_calls") or []:
                    if "id" in piece:
                        calls.append({k: piece[k] for k in ("id", "type")}
                                     | {"function": dict(piece["function"])})  # fmt: skip
                    elif calls:
                        calls[-1]["function"]["arguments"] += piece["function"]["arguments"]
                finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    body = {**head, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}]}  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return body
