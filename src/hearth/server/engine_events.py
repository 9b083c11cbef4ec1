"""Reading an engine's OpenAI event stream, for the faces that rewrite it into another dialect
(Ollama's NDJSON, Anthropic's and the Responses API's events).

The engine sends `data: {chunk}` lines; a line may arrive split across reads. `engine_chunks`
yields each complete chunk as a dict as soon as its line is whole (no buffering beyond it, so
the decode rate through a rewriting face stays the pass-through's), skipping `[DONE]` and
anything that is not a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any


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


async def engine_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
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


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as Anthropic and the Responses API write it: `event:` naming its type, then
    its data."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
