"""Time to first token: a tool call Hearth enforces vs the same request as plain chat.

Run by hand:  .venv/bin/python bench/bench_tools.py [--samples 30] [--tokens 8]

A real `hearth serve` child serves SmolLM2-135M (Q4_1) with a Hermes-style tool template. Both
requests carry the same messages and the same tool, so the engine processes the same prompt:
- plain: `tool_choice: "auto"`, the byte pass-through (the engine renders the tools itself);
- forced: `tool_choice` naming the function, which Hearth enforces: `/apply-template` renders
  the prompt, `/v1/completions` continues it under the arguments' JSON schema, and the output
  is rewritten into `tool_calls` deltas.
Requests alternate, each with a fresh prompt (no prompt-cache help for either), streamed; TTFT
is the time from sending to the first generated token's event (a text delta for plain, the
call's first delta for forced). Reported: median and p90 of each, and the median of the
paired differences (forced - plain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_proxy import prompt
from bench_responses import row, ttft
from support.engines import add_smol
from support.server import HearthProcess

SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
HERMES = (SUPPORT / "hermes_template.jinja").read_text()
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up in the dictionary.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    },
}


def body(text: str, tokens: int, *, forced: bool) -> dict[str, Any]:
    choice: Any = {"type": "function", "function": {"name": "lookup"}} if forced else "auto"
    return {
        "model": "smol",
        "messages": [{"role": "user", "content": text}],
        "tools": [TOOL],
        "tool_choice": choice,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        params = {"ctx_len": 2048, "n_parallel": 1, "cpu_threads": args.threads,
                  "chat_template": HERMES}  # fmt: skip
        add_smol(home, "smol", params)
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                url = f"{proc.url}/v1/chat/completions"
                plain: list[float] = []
                forced: list[float] = []
                for i in range(args.samples + 2):  # the first pair warms both paths up
                    pair = [
                        (plain, body(prompt(rng), args.tokens, forced=False), '"content":"'),
                        (forced, body(prompt(rng), args.tokens, forced=True), '"tool_calls"'),
                    ]
                    for out, request, marker in pair if i % 2 else pair[::-1]:
                        took = await ttft(client, url, request, marker)
                        if i >= 2:
                            out.append(took)
    print(f"SmolLM2-135M Q4_1 + Hermes template, {args.threads} threads, {args.samples} samples "
          f"per path, {args.tokens} tokens/request, alternating")  # fmt: skip
    print("| request | TTFT median (ms) | TTFT p90 (ms) | n |")
    print("|---|---|---|---|")
    print(row('tools, tool_choice "auto" (pass-through)', plain))
    print(row("tools, named tool_choice (enforced by Hearth)", forced))
    diffs = [f - p for f, p in zip(forced, plain, strict=True)]
    print(f"| added by enforcing (median of pairs) | {statistics.median(diffs) * 1000:+.1f} | | |")
    print(json.dumps({"plain_ms": statistics.median(plain) * 1000,
                      "forced_ms": statistics.median(forced) * 1000}))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per request")
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
