"""CPU per streamed token of the Ollama face's writer, in-process (no server, no engine).

Run by hand:  PYTHONPATH=src .venv/bin/python bench/bench_ollama_writer.py [--tokens 10000]

Two measures, each the best of --repeats runs of --tokens tokens, in CPU microseconds per token:

- `stream`: the whole per-token path of /api/chat, engine SSE bytes in, NDJSON lines out
  (`stream.ndjson`: line splitting, one JSON parse, the typed events, the Ollama line);
- `writer`: the Ollama line alone, from a token's text (`Reply.partial` on a TextDelta; on the
  code before issue 23, `line(Reply.feed(chunk))` on the parsed chunk).

The chunk is llama.cpp's own for one token of a chat stream. This is what /api/chat spends
beside the engine on the same 2 cores (bench/bench_ollama.py measures the decode-rate ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from hearth.server.ollama import stream, translate

WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", "."]


def chunk(text: str) -> dict[str, Any]:
    """llama.cpp's chunk for one token of a chat stream."""
    return {
        "choices": [{"finish_reason": None, "index": 0, "delta": {"content": text}}],
        "created": 1765000000,
        "id": "chatcmpl-0123456789abcdef0123456789abcdef",
        "model": "smollm2-135m",
        "system_fingerprint": "b6000-0123abcd",
        "object": "chat.completion.chunk",
    }


def sse(tokens: int) -> list[bytes]:
    """The engine's bytes, one read per token (as they arrive when decoding)."""
    reads = [f"data: {json.dumps(chunk(WORDS[i % 10]))}\n\n".encode() for i in range(tokens)]
    reads.append(b"data: [DONE]\n\n")
    return reads


def cpu(run: Callable[[], int], repeats: int) -> float:
    """The best CPU time of `repeats` runs, in microseconds per item."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        count = run()
        best = min(best, (time.process_time() - start) / count * 1e6)
    return best


def stream_run(reads: list[bytes]) -> Callable[[], int]:
    async def source() -> AsyncIterator[bytes]:
        for raw in reads:
            yield raw

    async def drain() -> int:
        reply = translate.Reply("smollm2-135m:latest", chat=True)
        lines = stream.ndjson(source(), reply, started_ns=time.monotonic_ns(), load_ns=1)
        return sum([1 async for _ in lines]) - 1  # the final line is not a token's

    return lambda: asyncio.run(drain())


def writer_run(tokens: int) -> Callable[[], int]:
    reply = translate.Reply("smollm2-135m:latest", chat=True)
    if hasattr(reply, "feed"):  # the code before issue 23
        parsed = [chunk(WORDS[i % 10]) for i in range(tokens)]

        def old() -> int:
            for item in parsed:
                stream.line(reply.feed(item, time.time()))  # type: ignore[attr-defined]
            return tokens

        return old
    from hearth.engines.events import TextDelta

    events = [[TextDelta(WORDS[i % 10])] for i in range(tokens)]

    def new() -> int:
        for batch in events:
            reply.partial(batch, time.time_ns())
        return tokens

    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    reads = sse(args.tokens)
    print(f"stream: {cpu(stream_run(reads), args.repeats):.2f} us CPU per token")
    print(f"writer: {cpu(writer_run(args.tokens), args.repeats):.2f} us CPU per token")


if __name__ == "__main__":
    main()
