"""Time to first token and decode rate streamed through Anthropic's /v1/messages vs OpenAI's
/v1/chat/completions, on one engine.

Run by hand:  .venv/bin/python bench/bench_anthropic.py [--tokens 128] [--rounds 5]

A real `hearth serve` child serves SmolLM2-135M (Q4_1). Both paths reach the same engine
process; /v1/messages adds the translation (Messages body -> chat body, the engine's SSE ->
Anthropic's events: one JSON parse and one JSON write per token). Each round sends one prompt
down each path, alternating which goes first; each prompt is new (a random prefix), so neither
path finds it in the engine's prompt cache and TTFT includes the prefill. Decode
tok/s per request = (text chunks - 1) / (last - first text chunk); medians over rounds.
/v1/messages asks the engine for usage in the stream, so /v1 is asked the same.
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


async def one_messages(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> dict[str, float]:
    """One streamed /v1/messages request: the same measures as bench_proxy.one."""
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "error":
                raise RuntimeError(event["error"])
            if event["type"] == "content_block_delta" and event["delta"].get("text"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    assert first is not None and last is not None
    decode = (chunks - 1) / (last - first) if chunks > 1 and last > first else float("nan")
    return {"ttft": first - t0, "decode": decode, "tokens": chunks}


async def rounds(client: httpx.AsyncClient, base: str, args: argparse.Namespace) -> None:
    rng = random.Random(10)
    stats: dict[str, dict[str, list[float]]] = {
        p: {"ttft": [], "decode": [], "tokens": []} for p in ("v1", "messages")
    }
    for r in range(args.rounds):
        order = ["v1", "messages"] if r % 2 == 0 else ["messages", "v1"]
        for path in order:
            messages = [{"role": "user", "content": prompt(rng)}]  # its own: no cached prefix
            common = {"model": "smol", "messages": messages, "max_tokens": args.tokens,
                      "temperature": 0, "stream": True}  # fmt: skip
            if path == "v1":
                v1 = {**common, "stream_options": {"include_usage": True}}
                got = await one(client, f"{base}/v1/chat/completions", v1)
            else:
                got = await one_messages(client, f"{base}/v1/messages", common)
            for key in ("ttft", "decode", "tokens"):
                stats[path][key].append(got[key])
            print(f"round {r} {path}: {got}", file=sys.stderr, flush=True)
    print("| path | TTFT ms (median) | decode tok/s (median) | tokens/request |")
    print("|---|---|---|---|")
    for path, label in (("v1", "/v1/chat/completions"), ("messages", "/v1/messages")):
        s = stats[path]
        ttft, decode = statistics.median(s["ttft"]) * 1000, statistics.median(s["decode"])
        print(f"| {label} | {ttft:.1f} | {decode:.1f} | {statistics.mean(s['tokens']):.0f} |")
    ratio = statistics.median(stats["messages"]["decode"]) / statistics.median(
        stats["v1"]["decode"]
    )
    print(f"| decode ratio messages / v1 | | {ratio:.3f} | |")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 1024, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                warm = {"model": "smol", "max_tokens": 8, "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
                await one_messages(client, f"{proc.url}/v1/messages", warm)
                print(f"SmolLM2-135M Q4_1, {args.threads} threads, {args.tokens} tokens/request, "
                      f"{args.rounds} rounds, one request at a time")  # fmt: skip
                await rounds(client, proc.url, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
