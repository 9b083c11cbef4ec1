"""Decode rate streamed through Ollama's /api/chat vs OpenAI's /v1/chat/completions, one engine.

Run by hand:  .venv/bin/python bench/bench_ollama.py [--tokens 128] [--rounds 5]

A real `hearth serve` child serves SmolLM2-135M (Q4_1, n_parallel 4). Both paths reach the same
engine process through Hearth; /api/chat adds the translation (Ollama body -> OpenAI body, SSE
-> NDJSON, one JSON parse and one JSON write per token). Each round sends the same C prompts
down both paths (temperature 0, so both generate the same tokens), alternating which goes
first. Per-request decode tok/s = (content chunks - 1) / (last - first content chunk), the
median over rounds; the ratio is /api over /v1. Target (issue 11): >= 0.97. /api/chat asks the
engine for usage in the stream (its final counters come from it), so it is compared with /v1
asking the same, and with a plain /v1 stream; the three paths rotate which goes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_proxy import one, prompt
from support.engines import add_smol
from support.server import HearthProcess


async def one_ollama(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, float]:
    """One streamed /api/chat request: the same measures as bench_proxy.one, from NDJSON."""
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event.get("error"):
                raise RuntimeError(event["error"])
            if (event.get("message") or {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    assert first is not None and last is not None
    decode = (chunks - 1) / (last - first) if chunks > 1 and last > first else float("nan")
    return {"ttft": first - t0, "decode": decode, "tokens": chunks}


async def both(
    client: httpx.AsyncClient, base: str, texts: list[str], tokens: int, turn: int
) -> dict[str, list[dict[str, float]]]:
    """The same prompts down each path (C at once per path), the order rotating with `turn`:
    /api/chat, /v1 with usage in the stream (what /api/chat asks the engine for), and a plain
    /v1 stream (what most OpenAI clients send)."""
    messages = [[{"role": "user", "content": t}] for t in texts]
    usage = {"include_usage": True}
    v1 = [{"model": "smol", "messages": m, "max_tokens": tokens, "temperature": 0,
           "stream": True} for m in messages]  # fmt: skip
    v1u = [{**b, "stream_options": usage} for b in v1]
    api = [{"model": "smol", "messages": m, "stream": True,
            "options": {"num_predict": tokens, "temperature": 0}} for m in messages]  # fmt: skip
    out: dict[str, list[dict[str, float]]] = {}
    names = ["api", "v1u", "v1"]
    for name in names[turn % 3 :] + names[: turn % 3]:
        if name == "api":
            calls = [one_ollama(client, f"{base}/api/chat", b) for b in api]
        else:
            bodies = v1u if name == "v1u" else v1
            calls = [one(client, f"{base}/v1/chat/completions", b) for b in bodies]
        out[name] = list(await asyncio.gather(*calls))
    return out


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 1024, "n_parallel": 4, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                await both(client, proc.url, [prompt(rng)], 16, 0)  # warm-up
                print(f"SmolLM2-135M Q4_1, n_parallel 4, {args.threads} threads, "
                      f"{args.tokens} tokens/request, {args.rounds} rounds")  # fmt: skip
                print("| C | path | decode tok/s/request (median) | tokens |")
                print("|---|---|---|---|")
                for c in (1, 4):
                    stats: dict[str, list[float]] = {"api": [], "v1u": [], "v1": []}
                    counts: dict[str, int] = {"api": 0, "v1u": 0, "v1": 0}
                    for r in range(args.rounds):
                        texts = [prompt(rng) for _ in range(c)]
                        got = await both(client, proc.url, texts, args.tokens, r)
                        for name, results in got.items():
                            stats[name].append(statistics.mean(x["decode"] for x in results))
                            counts[name] += int(sum(x["tokens"] for x in results))
                    med = {k: statistics.median(v) for k, v in stats.items()}
                    for name, label in (
                        ("v1", "/v1/chat/completions"),
                        ("v1u", "/v1/chat/completions + include_usage"),
                        ("api", "/api/chat"),
                    ):
                        print(f"| {c} | {label} | {med[name]:.1f} | {counts[name]} |")
                    print(f"| {c} | ratio /api / /v1 + usage | {med['api'] / med['v1u']:.3f} | |")
                    print(f"| {c} | ratio /api / plain /v1 | {med['api'] / med['v1']:.3f} | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
