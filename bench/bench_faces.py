"""Decode rate through every translated face vs /v1/chat/completions, one engine, one run.

Run by hand:  .venv/bin/python bench/bench_faces.py [--tokens 128] [--rounds 14] [--concurrency 1]

A real `hearth serve` child serves SmolLM2-135M (Q4_1, n_parallel 4). Every path reaches the same
engine process through Hearth: /v1/chat/completions passes bytes through; /api/chat (Ollama's
NDJSON), /v1/messages (Anthropic's events) and /v1/responses (Responses events) read the engine's
answer as typed events and write their dialect. Each round sends fresh prompts (no cached prefix)
down every path at temperature 0, rotating which path goes first. Per-request decode tok/s =
(text events - 1) / (last - first text event), read from the raw stream as a client would; the
ratio of each face to /v1 is taken per round (side by side) and its median reported, with the
spread. The translated faces ask the engine for usage in the stream, so the baseline is /v1 with
`stream_options.include_usage` (a plain /v1 stream is shown too). Target (issue 23): >= 0.97.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_proxy import prompt
from support.engines import add_smol
from support.server import HearthProcess

Texter = Callable[[str], bool]


def _v1_text(line: str) -> bool:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False
    event = json.loads(line[6:])
    if event.get("error"):
        raise RuntimeError(event["error"])
    return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])


def _ollama_text(line: str) -> bool:
    if not line:
        return False
    event = json.loads(line)
    if event.get("error"):
        raise RuntimeError(event["error"])
    return bool((event.get("message") or {}).get("content"))


def _messages_text(line: str) -> bool:
    if not line.startswith("data: "):
        return False
    event = json.loads(line[6:])
    if event["type"] == "error":
        raise RuntimeError(event["error"])
    return event["type"] == "content_block_delta" and bool(event["delta"].get("text"))


def _responses_text(line: str) -> bool:
    if not line.startswith("data: "):
        return False
    event = json.loads(line[6:])
    if event["type"] == "error":
        raise RuntimeError(event)
    return event["type"] == "response.output_text.delta" and bool(event.get("delta"))


def _bodies(text: str, tokens: int) -> dict[str, tuple[str, dict[str, Any], Texter]]:
    messages = [{"role": "user", "content": text}]
    v1 = {
        "model": "smol",
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    return {
        "v1": ("/v1/chat/completions", v1, _v1_text),
        "v1u": (
            "/v1/chat/completions",
            {**v1, "stream_options": {"include_usage": True}},
            _v1_text,
        ),
        "ollama": (
            "/api/chat",
            {
                "model": "smol",
                "messages": messages,
                "stream": True,
                "options": {"num_predict": tokens, "temperature": 0},
            },
            _ollama_text,
        ),
        "messages": ("/v1/messages", {**v1, "stream": True}, _messages_text),
        "responses": (
            "/v1/responses",
            {
                "model": "smol",
                "input": messages,
                "stream": True,
                "max_output_tokens": tokens,
                "temperature": 0,
            },
            _responses_text,
        ),
    }


async def one(client: httpx.AsyncClient, url: str, body: dict[str, Any], texter: Texter) -> float:
    """Decode tok/s of one streamed request, from its text events' arrival times."""
    first = last = None
    chunks = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if texter(line):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    assert first is not None and last is not None and chunks > 1, (url, chunks)
    return (chunks - 1) / (last - first)


async def a_round(
    client: httpx.AsyncClient, base: str, rng: random.Random, args: argparse.Namespace, turn: int
) -> dict[str, float]:
    """Each path once (C requests at once), the order rotating with `turn`."""
    names = list(_bodies("", 1))
    order = names[turn % len(names) :] + names[: turn % len(names)]
    out: dict[str, float] = {}
    for name in order:
        calls = []
        for _ in range(args.concurrency):
            path, body, texter = _bodies(prompt(rng), args.tokens)[name]
            calls.append(one(client, base + path, body, texter))
        out[name] = statistics.mean(await asyncio.gather(*calls))
    return out


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(23)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 2048, "n_parallel": 4, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                await a_round(client, proc.url, rng, args, 0)  # warm-up
                rounds = [await a_round(client, proc.url, rng, args, r) for r in range(args.rounds)]
    print(
        f"SmolLM2-135M Q4_1, n_parallel 4, {args.threads} engine threads, {args.tokens} "
        f"tokens/request, C={args.concurrency}, {args.rounds} rounds"
    )
    print(
        "| path | decode tok/s/request (median) | ratio to /v1 + usage (median, min-max) "
        "| ratio to plain /v1 (median) |"
    )
    print("|---|---:|---:|---:|")
    labels = {
        "v1": "/v1/chat/completions",
        "v1u": "/v1/chat/completions + include_usage",
        "ollama": "/api/chat",
        "messages": "/v1/messages",
        "responses": "/v1/responses",
    }
    for name, label in labels.items():
        rates = [r[name] for r in rounds]
        vs_u = [r[name] / r["v1u"] for r in rounds]
        vs_v1 = [r[name] / r["v1"] for r in rounds]
        print(
            f"| {label} | {statistics.median(rates):.1f} | {statistics.median(vs_u):.3f} "
            f"({min(vs_u):.2f}-{max(vs_u):.2f}) | {statistics.median(vs_v1):.3f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
