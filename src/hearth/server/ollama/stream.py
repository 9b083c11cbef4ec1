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

from hearth.engines.events import engine_chunks, engine_error
from hearth.server.ollama.translate import Reply

NDJSON = "application/x-ndjson"


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def ndjson(
    chunks: AsyncIterator[bytes],
    reply: Reply,
    *,
    started_ns: int,
    load_ns: int,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[bytes]:
    """Ollama's lines for an engine's event stream (see the module docstring)."""
    async for event in engine_chunks(chunks):
        error = engine_error(event)
        if error is not None:
            yield line({"error": error})
            return
        partial = reply.feed(event, clock())
        if partial is not None:
            yield line(partial)
    total = time.monotonic_ns() - started_ns
    yield line(reply.final(clock(), total_ns=total, load_ns=load_ns, whole=False))
