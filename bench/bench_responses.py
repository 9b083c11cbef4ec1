"""Time to first token: OpenAI's Responses API (/v1/responses) vs the same request as plain chat.

Run by hand:  .venv/bin/python bench/bench_responses.py [--samples 40] [--tokens 8]

A real `hearth serve` child serves SmolLM2-135M (Q4_1). Both paths reach the same engine
process; /v1/responses adds the translation (Responses body -> chat body, chat chunks ->
Responses events, with response.created / in_progress / output_item.added /
content_part.added before the first delta). Requests alternate path, each with a fresh prompt
(so neither path gets the other's prompt cache), streamed; TTFT is the time from sending to the
first text delta. Reported: median and p90 of each path and the median of the paired
differences (responses - chat).
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
from bench_proxy import prompt
from support.engines import add_smol
from support.server import HearthProcess


async def ttft(client: httpx.AsyncClient, url: str, body: dict[str, Any], marker: str) -> float:
    """`_ttft`, retried once if a pooled connection turns out closed (as bench_proxy.one)."""
    try:
        return await _ttft(client, url, body, marker)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return await _ttft(client, url, body, marker)


async def _ttft(client: httpx.AsyncClient, url: str, body: dict[str, Any], marker: str) -> float:
    """Seconds from sending `body` to the first SSE data line holding `marker` (a text delta);
    the rest of the stream is read to its end so the next request starts on an idle engine."""
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if first is None and line.startswith("data: ") and marker in line:
                first = time.perf_counter()
    if first is None:
        raise RuntimeError(f"no text delta from {url}")
    return first - t0


def bodies(text: str, tokens: int) -> tuple[dict[str, Any], dict[str, Any]]:
    chat = {
        "model": "smol",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    responses = {
        "model": "smol",
        "input": text,
        "max_output_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    return chat, responses


def row(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return f"| {name} | {statistics.median(ms):.1f} | {p90:.1f} | {len(ms)} |"


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(10)
    chat_marker, resp_marker = '"content":"', "response.output_text.delta"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 1024, "n_parallel": 1, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                chat_url, resp_url = f"{proc.url}/v1/chat/completions", f"{proc.url}/v1/responses"
                chat: list[float] = []
                resp: list[float] = []
                for i in range(args.samples + 2):  # the first pair warms both paths up
                    chat_body, resp_body = bodies(prompt(rng), args.tokens)
                    resp_body["input"] = prompt(rng)
                    pair = [(chat, chat_url, chat_body, chat_marker),
                            (resp, resp_url, resp_body, resp_marker)]  # fmt: skip
                    for out, url, body, marker in pair if i % 2 else pair[::-1]:
                        took = await ttft(client, url, body, marker)
                        if i >= 2:
                            out.append(took)
    print(f"SmolLM2-135M Q4_1, {args.threads} threads, {args.samples} samples per path, "
          f"{args.tokens} tokens/request, alternating")  # fmt: skip
    print("| path | TTFT median (ms) | TTFT p90 (ms) | n |")
    print("|---|---|---|---|")
    print(row("/v1/chat/completions", chat))
    print(row("/v1/responses", resp))
    diffs = [r - c for r, c in zip(resp, chat, strict=True)]
    print(
        f"| added by /v1/responses (median of pairs) | {statistics.median(diffs) * 1000:+.1f} | | |"
    )
    print(json.dumps({"chat_ms": statistics.median(chat) * 1000,
                      "responses_ms": statistics.median(resp) * 1000}))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per request")
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
