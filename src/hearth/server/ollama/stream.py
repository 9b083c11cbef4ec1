"""An engine's OpenAI event stream, rewritten on the fly as Ollama's NDJSON.

The engine sends `data: {chunk}` events; Ollama's clients read one JSON object per line. Each
event carrying text becomes one line at once (no buffering beyond the current event, so the
decode rate through /api/chat matches /v1's: see bench/bench_ollama.py), and the final line
carries `done: true` with the counters the engine reported in its last event. An error event
(the engine died mid-answer: `data: {"error": {...}}`) becomes Ollama's `{"error": "..."}`
line, which the `ollama` client raises as ResponseError.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from hearth.server.ollama.translate import Reply

NDJSON = "application/x-ndjson"


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _events(buffer: bytearray) -> list[bytes]:
    """Complete `data:` payloads in `buffer` (consumed); a partial line stays for later."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    complete = bytes(buffer[: end + 1])
    del buffer[: end + 1]
    return [raw[5:].strip() for raw in complete.split(b"\n") if raw.startswith(b"data:")]


def _error_text(event: dict[str, Any]) -> str | None:
    error = event.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "the engine failed")
    return str(error) if error else None


async def ndjson(
    chunks: AsyncIterator[bytes],
    reply: Reply,
    *,
    started_ns: int,
    load_ns: int,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[bytes]:
    """Ollama's lines for an engine's event stream (see the module docstring)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        for payload in _events(buffer):
            if payload == b"[DONE]" or not payload:
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            error = _error_text(event)
            if error is not None:
                yield line({"error": error})
                return
            partial = reply.feed(event, clock())
            if partial is not None:
                yield line(partial)
    total = time.monotonic_ns() - started_ns
    yield line(reply.final(clock(), total_ns=total, load_ns=load_ns, whole=False))
