"""The engine's OpenAI event stream, read as Anthropic's events (`translate.Assembler`).

`events` turns the engine's `data: {chunk}` lines into Anthropic event objects as they come
(no buffering beyond the current line and held-back stop-sequence text), so the decode rate
through /v1/messages stays /v1/chat/completions' (bench/bench_anthropic.py). When a stop
sequence matched it stops reading, and the caller's closing the upstream cancels the
generation. An engine error mid-answer (`data: {"error": {...}}`) becomes Anthropic's `error`
event, which the `anthropic` client raises.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from hearth.server.anthropic.translate import Assembler, Event

SSE = "text/event-stream"


def sse(event: Event) -> bytes:
    """One event as Anthropic writes it: an `event:` line naming its type, then its data."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def error_event(message: str, kind: str = "api_error") -> Event:
    return {"type": "error", "error": {"type": kind, "message": message}}


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
        chunk = json.loads(payload)
    except ValueError:
        return None
    return chunk if isinstance(chunk, dict) else None


async def events(chunks: AsyncIterator[bytes], reply: Assembler) -> AsyncIterator[Event]:
    """Anthropic's events for an engine stream, `message_start` to `message_stop`."""
    for event in reply.start():
        yield event
    buffer = bytearray()
    async for raw in chunks:
        buffer += raw
        for payload in _payloads(buffer):
            chunk = _chunk(payload)
            if chunk is None:
                continue
            error = chunk.get("error")
            if error:
                text = error.get("message") if isinstance(error, dict) else str(error)
                yield error_event(str(text or "the engine failed"))
                return
            for event in reply.feed(chunk):
                yield event
        if reply.done:
            break
    for event in reply.finish_events():
        yield event
