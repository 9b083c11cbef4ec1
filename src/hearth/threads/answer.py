"""A run of a thread: the chat request built from it, and the answer gathered from the engine.

Pure pieces of `POST /v1/threads/{id}/runs`. `chat_request` turns the stored conversation into
an OpenAI chat-completions body, the same kind of body a client sends to /v1/chat/completions
(so it takes the same path and the same checks; a stored parameter can only be a request
field, never an engine flag). `Answer` reads the engine's SSE bytes as they pass through to the
client, gathering the text, usage and llama.cpp's timings to store in the assistant message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import InvalidRequest
from hearth.models.ids import validate_model_id
from hearth.threads.views import (
    content_parts,
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

    The model is the request's, else the thread's. Parameters: the thread's, then the
    request's. Messages: the thread's instructions as a system message, then every message
    that is not pending or failed (text parts joined, images kept as OpenAI image parts).
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
    validate_model_id(model)
    extra = request.get("parameters")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidRequest("'parameters' must be a JSON object.", param="parameters")
    params = {**thread_parameters(thread), **(extra or {})}
    keep_alive = params.pop("keep_alive", None)
    body = {k: v for k, v in params.items() if k not in RESERVED}
    chat: list[dict[str, Any]] = []
    instructions = thread_instructions(thread)
    if instructions:
        chat.append({"role": "system", "content": instructions})
    chat.extend(filter(None, map(_chat_message, messages)))
    if all(m["role"] == "system" for m in chat):
        raise InvalidRequest(
            "The thread has no message to answer: add one with POST "
            "/v1/threads/{id}/messages first.",
            param="thread_id",
        )
    body.update(model=model, messages=chat, stream=True, stream_options={"include_usage": True})
    return body, keep_alive


def _chat_message(message: dict[str, Any]) -> dict[str, Any] | None:
    role = message.get("role")
    if role not in ("user", "assistant", "system") or message.get("status") in _SKIPPED_STATUSES:
        return None
    parts = content_parts(message.get("content"))
    text = "\n".join(t for t in map(part_text, parts) if t)
    images = [
        {"type": "image_url", "image_url": {"url": p["image_url"]["url"]}}
        for p in parts
        if isinstance(p, dict)
        and p.get("type") == "image_url"
        and isinstance(p.get("image_url"), dict)
        and str(p["image_url"].get("url", "")).startswith("data:")
    ]
    if images and role == "user":
        return {"role": role, "content": [{"type": "text", "text": text}, *images]}
    if not text:
        return None
    return {"role": role, "content": text}


@dataclass
class Answer:
    """What the engine has said so far, from its `chat.completion.chunk` events."""

    started: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_code: str | None = None
    ttft_ms: float | None = None
    _buffer: bytearray = field(default_factory=bytearray, repr=False)

    def feed(self, raw: bytes) -> None:
        """Take the next bytes of the stream (a line may be split across reads)."""
        self._buffer += raw
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return
        complete = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        for line in complete.split(b"\n"):
            if line.startswith(b"data:"):
                self._chunk(line[5:].strip())

    def _chunk(self, payload: bytes) -> None:
        if not payload or payload == b"[DONE]":
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        if chunk.get("error"):
            self.fail(chunk["error"])
            return
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._delta(choice)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]

    def _delta(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("content", "reasoning_content"):
                piece = delta.get(key)
                if isinstance(piece, str) and piece:
                    if self.ttft_ms is None:
                        self.ttft_ms = round((time.monotonic() - self.started) * 1000, 1)
                    if key == "content":
                        self.text += piece
                    else:
                        self.reasoning += piece
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])

    def fail(self, error: Any, code: str | None = None) -> None:
        """Record an engine error (an error chunk, or a refusal before the stream)."""
        if isinstance(error, dict):
            self.error = str(error.get("message") or "the engine failed")
            found = error.get("code") or error.get("type")
            self.error_code = code or (str(found) if found else "engine_error")
        else:
            self.error = str(error or "the engine failed")
            self.error_code = code or "engine_error"

    def parts(self) -> list[dict[str, Any]]:
        """The message content so far, in Jan's parts (reasoning first, as models think)."""
        parts = []
        if self.reasoning:
            parts.append(
                {"type": "reasoning", "text": {"value": self.reasoning, "annotations": []}}
            )
        parts.append(text_part(self.text))
        return parts

    def metadata(self) -> dict[str, Any]:
        """What the message's metadata gains at the end: usage, timings, time to first token."""
        extra: dict[str, Any] = {}
        if self.usage is not None:
            extra["usage"] = self.usage
        if self.timings is not None:
            extra["timings"] = self.timings
        if self.ttft_ms is not None:
            extra["ttft_ms"] = self.ttft_ms
        if self.finish_reason is not None:
            extra["finish_reason"] = self.finish_reason
        return extra
