"""Reading an engine's OpenAI event stream, for the code that rewrites it: the faces that speak
another dialect (Ollama's NDJSON, Anthropic's and the Responses API's events) and the answers
Hearth composes itself (forced tool calls, `n` choices, legacy completions).

The engine sends `data: {chunk}` lines; a line may arrive split across reads. `engine_chunks`
yields each complete chunk as a dict as soon as its line is whole (no buffering beyond it, so
the decode rate through a rewriting face stays the pass-through's), skipping `[DONE]` and
anything that is not a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from hearth.errors import EngineError, HearthError, InvalidRequest, from_wire


def _payloads(buffer: bytearray) -> list[bytes]:
    """Complete `data:` payloads in `buffer` (consumed); a partial line stays for later."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    complete = bytes(buffer[: end + 1])
    del buffer[: end + 1]
    return [raw[5:].strip() for raw in complete.split(b"\n") if raw.startswith(b"data:")]


def _chunk(payload: bytes) -> dict[str, Any] | None:
    if not payload or payload == b"[DONE]":
        return None
    try:
        parsed = json.loads(payload)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def engine_chunks(chunks: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """The engine's stream chunks, parsed, as each line completes."""
    buffer = bytearray()
    async for raw in chunks:
        buffer += raw
        for payload in _payloads(buffer):
            chunk = _chunk(payload)
            if chunk is not None:
                yield chunk


def engine_error(chunk: Mapping[str, Any]) -> str | None:
    """The message of an error chunk (the engine failed mid-answer), else None."""
    error = chunk.get("error")
    if not error:
        return None
    text = error.get("message") if isinstance(error, dict) else error
    return str(text or "the engine failed")


def engine_refusal(status: int, content: bytes, model: str) -> HearthError:
    """An engine's error response as a Hearth error: OpenAI's shape (a string `code`, a `type`)
    and a message that says what to change. llama.cpp answers with a numeric `code` and its own
    `type` names; only error responses are read here, never a successful answer."""
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else ""
    kind = error.get("type")
    if kind == "exceed_context_size_error":
        return InvalidRequest(
            f"{text or 'The request does not fit the context'}. Send fewer tokens (a shorter "
            f"conversation or a lower max_tokens), or give the model a larger context: "
            f"`hearth models edit {model} engine_parameters.ctx_len=16384`.",
            param="messages",
            code="context_length_exceeded",
        )
    if kind == "not_supported_error" or status == 501:
        return InvalidRequest(
            f"Model '{model}' cannot do this: {text or 'not supported by its engine'}.",
            code="not_supported",
        )
    if status in (400, 422):
        return InvalidRequest(
            f"The engine refused the request: {text or f'HTTP {status}'}. Fix the field it names "
            "and send it again.",
            code="invalid_request",
        )
    if status < 500 or status == 503:  # not found, too large, busy...: keep what it said
        return from_wire(status, {"error": {"message": f"The engine answered: {text}"}}, text)
    return EngineError(
        f"Model '{model}''s engine failed: {text or f'HTTP {status}'}. Try again; if it "
        f"persists, the engine's log in <home>/logs/ says why (GET /v1/running names it).",
        code="engine_error",
    )
