"""The engine's OpenAI event stream, read as Anthropic's events (`translate.Assembler`).

`events` turns the engine's `data: {chunk}` lines into Anthropic event objects as they come
(no buffering beyond the current line and held-back stop-sequence text), so the decode rate
through /v1/messages stays /v1/chat/completions' (bench/bench_anthropic.py). When a stop
sequence matched it stops reading, and the caller's closing the upstream cancels the
generation. An engine error mid-answer (`data: {"error": {...}}`) becomes Anthropic's `error`
event, which the `anthropic` client raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.server.anthropic.translate import Assembler, Event
from hearth.server.engine_events import engine_chunks, engine_error, sse

__all__ = ["SSE", "error_event", "events", "sse"]

SSE = "text/event-stream"


def error_event(message: str, kind: str = "api_error") -> Event:
    return {"type": "error", "error": {"type": kind, "message": message}}


async def events(chunks: AsyncIterator[bytes], reply: Assembler) -> AsyncIterator[Event]:
    """Anthropic's events for an engine stream, `message_start` to `message_stop`."""
    for event in reply.start():
        yield event
    async for chunk in engine_chunks(chunks):
        error = engine_error(chunk)
        if error is not None:
            yield error_event(error)
            return
        for event in reply.feed(chunk):
            yield event
        if reply.done:
            break
    for event in reply.finish_events():
        yield event
