"""A run of a thread: the chat request built from it, and the answer gathered from the engine.

Pure pieces of `POST /v1/threads/{id}/runs`. `chat_request` turns the stored conversation into
an OpenAI chat-completions body, the same kind of body a client sends to /v1/chat/completions
(so it takes the same path and the same checks; a stored parameter can only be a request
field, never an engine flag). `ThreadReply` reads the engine's SSE bytes as they pass through to
the client, through the one parser of engine answers (`engines.events`), gathering the text,
usage and llama.cpp's timings to store in the assistant message.
"""

from __future__ import annotations

import time
from typing import Any

from hearth.core.errors import InvalidRequest
from hearth.engines.events import EventSplitter, Failure, Gathered, ReasoningDelta, TextDelta
from hearth.models.ids import validate_any_id
from hearth.threads import jan
from hearth.threads.assistant_rules import render_instructions, sampling
from hearth.threads.views import (
    content_parts,
    first_assistant,
    part_text,
    text_part,
    thread_instructions,
    thread_model,
    thread_parameters,
)

#: Fields of the body that the run sets itself: a stored or requested parameter never does.
RESERVED = frozenset({"model", "messages", "prompt", "stream", "stream_options", "n"})
_SKIPPED_STATUSES = ("pending", "error")


def chat_request(
    thread: dict[str, Any], messages: list[dict[str, Any]], request: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    """The chat-completions body for a run, and its `keep_alive` (None: the model's).

    The model is the request's, else the thread's. Parameters: the sampling ones of the
    thread's assistant snapshot (`assistants[0].parameters`, Jan's), then the thread's own,
    then the request's. Messages: the thread's instructions as a system message (with
    `{{current_date}}` filled in, as Jan does), then every message that is not pending or
    failed (text parts joined, images kept as OpenAI image parts).
    """
    asked = request.get("model")
    if asked is not None and not isinstance(asked, str):
        raise InvalidRequest("'model' must be a model id (a string).", param="model")
    model = asked or thread_model(thread)
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            'Name the model to answer with: send {"model": "<id>"} in the run, or set the '
            "thread's model with POST /v1/threads/{id} (GET /v1/models lists the ids).",
            param="model",
        )
    validate_any_id(model)
    extra = request.get("parameters")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidRequest("'parameters' must be a JSON object.", param="parameters")
    own = sampling(first_assistant(thread).get("parameters"), "the thread's assistant")
    params = {**own, **thread_parameters(thread), **(extra or {})}
    keep_alive = params.pop("keep_alive", None)
    body = {k: v for k, v in params.items() if k not in RESERVED}
    chat: list[dict[str, Any]] = []
    instructions = thread_instructions(thread)
    if instructions:
        chat.append({"role": "system", "content": render_instructions(instructions)})
    chat.extend(_chat_messages(messages))
    if all(m["role"] == "system" for m in chat):
        raise InvalidRequest(
            "The thread has no message to answer: add one with POST "
            "/v1/threads/{id}/messages first.",
            param="thread_id",
        )
    body.update(model=model, messages=chat, stream=True, stream_options={"include_usage": True})
    return body, keep_alive


def _chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored turns as chat messages: an assistant's tool calls (Jan's
    `metadata.tool_calls`, or older `tool_call` parts) become its `tool_calls` followed by one
    `tool` message per result, so a conversation Jan wrote with tools continues as it was; a
    stored `tool` message is kept only when it answers a call sent before it."""
    chat: list[dict[str, Any]] = []
    called: set[str] = set()
    for message in messages:
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            skipped = message.get("status") in _SKIPPED_STATUSES
            if isinstance(call_id, str) and call_id in called and not skipped:
                chat.append({"role": "tool", "tool_call_id": call_id, "content": _text(message)})
            continue
        turn = _chat_message(message)
        if turn is None:
            continue
        chat.extend(turn)
        called.update(c["id"] for m in turn for c in m.get("tool_calls", ()))
    return chat


def _text(message: dict[str, Any]) -> str:
    parts = content_parts(message.get("content"))
    return "\n".join(t for t in map(part_text, parts) if t)


def _chat_message(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    role = message.get("role")
    if role not in ("user", "assistant", "system") or message.get("status") in _SKIPPED_STATUSES:
        return None
    parts = content_parts(message.get("content"))
    text = _text(message)
    if role == "assistant":  # Jan's inline reasoning is never sent back, as reasoning parts aren't
        text = jan.split_think(text)[1].strip()
        return _assistant_turn(message, text)
    images = [
        {"type": "image_url", "image_url": {"url": p["image_url"]["url"]}}
        for p in parts
        if isinstance(p, dict)
        and p.get("type") == "image_url"
        and isinstance(p.get("image_url"), dict)
        and str(p["image_url"].get("url", "")).startswith("data:")
    ]
    if images and role == "user":
        return [{"role": role, "content": [{"type": "text", "text": text}, *images]}]
    if not text:
        return None
    return [{"role": role, "content": text}]


def _assistant_turn(message: dict[str, Any], text: str) -> list[dict[str, Any]] | None:
    """An assistant's answer, with its finished tool calls and their results. A call with no
    result yet (Jan's `pending`) is left out: a call the model never saw answered would make
    the history one the engine refuses."""
    answered = [c for c in jan.tool_calls(message) if c["result"] is not None]
    if not answered:
        return [{"role": "assistant", "content": text}] if text else None
    mid = message.get("id")
    calls, results = [], []
    for i, call in enumerate(answered):
        call_id = call["id"] or f"call_{mid if isinstance(mid, str) else 'x'}_{i}"
        calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        )
        results.append({"role": "tool", "tool_call_id": call_id, "content": call["result"]})
    return [{"role": "assistant", "content": text, "tool_calls": calls}, *results]


class ThreadReply:
    """The assistant message a run is writing, gathered from the engine's answer as its bytes
    pass through to the client: one `Gathered` fed by the shared parser (`EventSplitter`), plus
    what only a thread keeps (the time to the first token, a refusal before the stream)."""

    __slots__ = ("_events", "gathered", "started", "ttft_ms")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.gathered = Gathered()
        self.ttft_ms: float | None = None
        self._events = EventSplitter()

    def feed(self, raw: bytes) -> None:
        """Take the next bytes of the stream (a line may be split across reads)."""
        for event in self._events.feed(raw):
            if self.ttft_ms is None and isinstance(event, TextDelta | ReasoningDelta):
                self.ttft_ms = round((time.monotonic() - self.started) * 1000, 1)
            self.gathered.add(event)

    def fail(self, message: str, code: str | None = None) -> None:
        """Record a refusal before the stream (an unknown model, an engine that failed to load)."""
        self.gathered.failure = Failure(message or "the engine failed", code or "engine_error")

    @property
    def text(self) -> str:
        return self.gathered.text

    @property
    def reasoning(self) -> str:
        return self.gathered.reasoning

    @property
    def finish_reason(self) -> str | None:
        return self.gathered.finish

    @property
    def error(self) -> str | None:
        failure = self.gathered.failure
        return None if failure is None else failure.message

    @property
    def error_code(self) -> str | None:
        failure = self.gathered.failure
        return None if failure is None else failure.code

    def parts(self) -> list[dict[str, Any]]:
        """The message content so far, as today's Jan writes it: one text part, the reasoning
        inline before the answer as `<think>...</think>` (lib/messages.ts)."""
        return [text_part(jan.with_think(self.reasoning, self.text))]

    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls the model asked for, as Jan's `metadata.tool_calls` (no result: a thread
        run runs no tool; the call is kept for the user and a client that does)."""
        calls = sorted(self.gathered.calls.items())
        return [
            jan.jan_tool_call(c.id or f"call_{i}", c.name, c.arguments or "{}") for i, c in calls
        ]

    def metadata(self) -> dict[str, Any]:
        """What the message's metadata gains at the end: usage, timings, time to first token."""
        extra: dict[str, Any] = {}
        gathered = self.gathered
        if gathered.usage is not None:
            extra["usage"] = gathered.usage.raw
        if gathered.timings is not None:
            extra["timings"] = gathered.timings
        if self.ttft_ms is not None:
            extra["ttft_ms"] = self.ttft_ms
        if gathered.finish is not None:
            extra["finish_reason"] = gathered.finish
        if gathered.calls:
            extra["tool_calls"] = self.tool_calls()
        return extra
