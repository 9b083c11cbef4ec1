"""An engine's answer stream, rewritten on the fly as Ollama's NDJSON.

The engine's `data: {chunk}` lines are read by the one parser of an answer (`engines/events`:
`engine_chunks`, `EventReader`); each chunk's typed events carrying text become one Ollama
line at once (no buffering beyond the current chunk, so the decode rate through /api/chat
matches /v1's: see bench/bench_ollama.py and bench/bench_ollama_writer.py), and the final line
carries `done: true` with the counters the engine reported in its last chunk. A chunk is the
unit because Ollama writes a token's text and thinking on one line. An engine failure (`data:
{"error": {...}}`, a `Failure` event) becomes Ollama's `{"error": "..."}` line, which the
`ollama` client raises as ResponseError, and ends the stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from hearth.core.errors import HearthError
from hearth.engines.events import EventReader, engine_chunks
from hearth.server.ollama.translate import Reply, line, rfc3339
from hearth.server.respond import Beats

NDJSON = "application/x-ndjson"
__all__ = ["NDJSON", "beats", "line", "ndjson"]


def beats(reply: Reply) -> Beats:
    """A waiting stream's frames (server/respond.py): a partial line with no text, as Ollama
    writes one (every Ollama client reads it as an empty piece), and `{"error": ...}`, the line
    the `ollama` client raises as ResponseError, for a refusal after the stream began."""

    def alive() -> bytes:
        piece: dict[str, object] = {"model": reply.name, "created_at": rfc3339(time.time())}
        if reply.chat:
            piece["message"] = {"role": "assistant", "content": ""}
        else:
            piece["response"] = ""
        piece["done"] = False
        return line(piece)

    def failed(error: HearthError) -> bytes:
        return line({"error": error.message})

    return Beats(alive, failed, NDJSON)


async def ndjson(
    chunks: AsyncIterator[bytes],
    reply: Reply,
    *,
    started_ns: int,
    load_ns: int,
    clock: Callable[[], int] = time.time_ns,
) -> AsyncIterator[bytes]:
    """Ollama's lines for an engine's event stream (see the module docstring)."""
    reader = EventReader()
    partial = reply.partial
    async for chunk in engine_chunks(chunks):
        written = partial(reader.chunk(chunk), clock())
        if written is not None:
            yield written
            if reply.failed:
                return
    total = time.monotonic_ns() - started_ns
    yield line(reply.final(clock(), total_ns=total, load_ns=load_ns, whole=False))
