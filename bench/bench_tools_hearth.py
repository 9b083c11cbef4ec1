"""Time to first token of Hearth's own tool prompt (a template without tools) vs plain chat.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/bench_tools_hearth.py [--samples 20]

A real `hearth serve` child serves SmolLM2-135M (Q4_1) with its own chat template, which has no
place for tools, so a request with tools goes through Hearth's tool prompt
(`services/toolprompt.py`). Four requests with the same user message (fresh each round, so the
prompt cache helps only with what every round shares, as it does for an agent that resends the
same tools):
- plain: no tools, the byte pass-through;
- plain + tool text: no tools, but the system message is the very text Hearth writes for the
  tools, so the engine reads the same prompt as the tool requests (the pass-through again);
- forced: `tool_choice` naming the function: `/apply-template`, then `/v1/completions` under
  the arguments' JSON schema, rewritten into `tool_calls` deltas; TTFT to the call's first delta;
- auto: `tool_choice` "auto": `/apply-template`, then `/v1/completions` streamed through the
  opener watch; TTFT to the first non-empty content delta (the model answers in text here).
Then the auto path that calls: a conversation in which the model called the tool twice before
(the same each round), "auto" vs the same conversation with "required", TTFT to the first
`tool_calls` delta (both generate the call's name); the auto one makes two engine requests
(text until `<tool_call>`, then the constrained call), the second reading its prompt from the
engine's cache.
Requests alternate order each round; reported: median and p90 of each, and the median of the
paired differences against plain + tool text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
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
from bench_responses import row
from support.engines import add_smol
from support.server import HearthProcess

from hearth.services.toolprompt import instructions

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
TEXT = re.compile(r'"content":"[^"]')
CALL = '"tool_calls"'


def _shot(city: str, sky: str, n: int) -> list[dict[str, Any]]:
    arguments = json.dumps({"city": city})
    call = {"id": f"c{n}", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip
    return [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": sky},
        {"role": "assistant", "content": f"It is {sky} in {city}."},
    ]


def body(messages: list[dict[str, Any]], tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": "smol", "messages": messages, "max_tokens": tokens, "temperature": 0,
            "seed": 1, "stream": True, **extra}  # fmt: skip


async def ttft(client: httpx.AsyncClient, url: str, request: dict[str, Any], marker: Any) -> float:
    """Seconds to the first SSE line matching `marker` (a string or a regex); the rest of the
    stream is read so the next request starts on an idle engine. NaN if none came."""
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=request) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            hit = marker.search(line) if isinstance(marker, re.Pattern) else marker in line
            if first is None and line.startswith("data: ") and hit:
                first = time.perf_counter()
    return float("nan") if first is None else first - t0


def first_round(text: str, tokens: int) -> list[tuple[str, dict[str, Any], Any]]:
    ask = [{"role": "user", "content": text}]
    shown = [{"role": "system", "content": instructions([TOOL])}, *ask]
    return [
        ("plain", body(ask, tokens), TEXT),
        ("plain + tool text", body(shown, tokens), TEXT),
        ("forced", body(ask, tokens, tools=[TOOL], tool_choice=NAMED), CALL),
        ("auto", body(ask, tokens, tools=[TOOL], tool_choice="auto"), TEXT),
    ]


def call_round() -> list[tuple[str, dict[str, Any], Any]]:
    """The conversation of tests/test_tools_any_model.py that ends in a call on "auto" (with
    anything in front of it, SmolLM2 may answer in text instead: the same one every round, so
    the prompt cache serves both paths alike and what differs is the machinery)."""
    few = [*_shot("London", "raining", 1), *_shot("Berlin", "snowing", 2),
           {"role": "user", "content": "What is the weather in Paris?"}]  # fmt: skip
    return [
        ("few-shot, required", body(few, 40, tools=[TOOL], tool_choice="required"), CALL),
        ("few-shot, auto (calls)", body(few, 40, tools=[TOOL], tool_choice="auto"), CALL),
    ]


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(24)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 2048, "n_parallel": 1, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            async with httpx.AsyncClient(timeout=None) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                url = f"{proc.url}/v1/chat/completions"
                for i in range(args.samples + 1):  # the first round warms every path up
                    rounds = first_round(prompt(rng), args.tokens) + call_round()
                    for name, request, marker in rounds if i % 2 else rounds[::-1]:
                        took = await ttft(client, url, request, marker)
                        if i >= 1:
                            times.setdefault(name, []).append(took)
    print(f"SmolLM2-135M Q4_1, its own template (Hearth's tool prompt), {args.threads} threads, "
          f"{args.samples} rounds, {args.tokens} tokens/request, alternating")  # fmt: skip
    print("| request | TTFT median (ms) | TTFT p90 (ms) | n |")
    print("|---|---|---|---|")
    for name, values in times.items():
        seen = [v for v in values if v == v]  # NaN: no such event came
        print(row(name, seen) if seen else f"| {name} | no such event | | 0 |")
    base = times["plain + tool text"]
    for name in ("forced", "auto"):
        diffs = [t - b for t, b in zip(times[name], base, strict=True) if t == t]
        print(f"| {name} - plain + tool text (median of pairs) | "
              f"{statistics.median(diffs) * 1000:+.1f} | | |")  # fmt: skip
    pairs = zip(times["few-shot, auto (calls)"], times["few-shot, required"], strict=True)
    diffs = [a - f for a, f in pairs if a == a]
    if diffs:
        print(f"| few-shot auto - required (median of pairs) | "
              f"{statistics.median(diffs) * 1000:+.1f} | | {len(diffs)} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per request")
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
