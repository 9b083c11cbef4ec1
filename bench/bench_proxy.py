"""Inference through Hearth vs straight to the same engine process: what does the proxy cost?

Run by hand:  .venv/bin/python bench/bench_proxy.py [--tokens 128] [--rounds 3] [--ttft-samples 40]

A real `hearth serve` child serves SmolLM2-135M (Q4_1) with n_parallel 8; the direct path talks
to the very engine process Hearth started (its port from GET /v1/running), so both paths share
one engine and differ only by the proxy. Rounds alternate which path goes first.

- decode: C streamed chat requests at once, each with a unique prompt (no prefix-cache help),
  `ignore_eos` and a fixed max_tokens; per-request decode tok/s = (chunks - 1) / (last - first
  content chunk); aggregate tok/s = all tokens / round wall time.
- TTFT: sequential requests with one fixed short prompt (llama.cpp reuses its cached prefix, so
  engine time is small and steady) and max_tokens 1; send -> first content chunk; p50 per path.
- batching: C=8 requests at once (n_parallel 8) vs the same 8 one at a time, through Hearth.
- hearth CPU: CPU seconds the Hearth process used per generated token, while proxying.

Targets (issue 4): decode ratio Hearth/direct >= 0.98 at C=1 and C=8, TTFT added p50 < 5 ms.
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
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engines import add_smol
from support.server import HearthProcess

WORDS = [
    *("river", "mountain", "garden", "city", "window", "story", "morning", "evening", "music"),
    *("paper", "letter", "market", "forest", "bridge", "winter", "summer", "station", "house"),
]


def prompt(rng: random.Random) -> str:
    return f"[{rng.random():.12f}] Continue this text: " + " ".join(rng.choices(WORDS, k=24))


async def one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, float]:
    """One streamed request; retried once if a pooled connection turns out closed."""
    try:
        return await _one(client, url, body)
    except httpx.RemoteProtocolError:
        return await _one(client, url, body)


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("error"):
                raise RuntimeError(event["error"])
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or []):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    assert first is not None and last is not None
    decode = (chunks - 1) / (last - first) if chunks > 1 and last > first else float("nan")
    return {"ttft": first - t0, "decode": decode, "tokens": chunks, "end": last}


async def round_of(
    client: httpx.AsyncClient, url: str, c: int, tokens: int, rng: random.Random
) -> dict[str, float]:
    bodies = [
        {"model": "smol", "messages": [{"role": "user", "content": prompt(rng)}],
         "max_tokens": tokens, "ignore_eos": True, "stream": True}
        for _ in range(c)
    ]  # fmt: skip
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(client, url, b) for b in bodies))
    wall = time.perf_counter() - t0
    return {
        "decode": statistics.mean(r["decode"] for r in results),
        "aggregate": sum(r["tokens"] for r in results) / wall,
        "tokens": sum(r["tokens"] for r in results),
    }


async def sequential(
    client: httpx.AsyncClient, url: str, n: int, tokens: int, rng: random.Random
) -> float:
    t0, total = time.perf_counter(), 0
    for _ in range(n):
        total += int((await round_of(client, url, 1, tokens, rng))["tokens"])
    return total / (time.perf_counter() - t0)


def engine_key(pid: int) -> str:
    """The key Hearth handed this engine at launch, read from its initial environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"HEARTH_ENGINE_KEY="):
            return item.split(b"=", 1)[1].decode()
    raise SystemExit(f"engine {pid} has no HEARTH_ENGINE_KEY in its environment")


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(4)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", {"ctx_len": 1024, "n_parallel": 8, "cpu_threads": args.threads})
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            hearth_cpu = psutil.Process(proc.proc.pid)  # type: ignore[union-attr]
            # expire idle connections before uvicorn's and llama.cpp's 5 s keep-alive does
            limits = httpx.Limits(max_connections=64, keepalive_expiry=2)
            async with httpx.AsyncClient(timeout=None, limits=limits) as client:
                (await client.post(f"{proc.url}/v1/models/smol/start")).raise_for_status()
                running = (await client.get(f"{proc.url}/v1/running")).json()["data"][0]
                # The engine takes only Hearth's per-launch key (from its environment; same
                # user). Hearth itself has no API key here, so it ignores the header.
                client.headers["Authorization"] = f"Bearer {engine_key(running['pid'])}"
                paths = {
                    "hearth": f"{proc.url}/v1/chat/completions",
                    "direct": f"http://127.0.0.1:{running['port']}/v1/chat/completions",
                }
                await round_of(client, paths["direct"], 8, 16, rng)  # warm-up both
                await round_of(client, paths["hearth"], 8, 16, rng)
                print(f"engine pid {running['pid']}, n_parallel 8, {args.tokens} tokens/request")
                print("| C | path | decode tok/s/request | aggregate tok/s | Hearth CPU ms/token |")
                print("|---|---|---|---|---|")
                ratios: dict[int, float] = {}
                for c in (1, 8):
                    stats: dict[str, list[dict[str, float]]] = {"hearth": [], "direct": []}
                    cpu: dict[str, float] = {"hearth": 0.0, "direct": 0.0}
                    for r in range(args.rounds):
                        order = ("hearth", "direct") if r % 2 == 0 else ("direct", "hearth")
                        for name in order:
                            before = sum(hearth_cpu.cpu_times()[:2])
                            stats[name].append(
                                await round_of(client, paths[name], c, args.tokens, rng)
                            )
                            cpu[name] += sum(hearth_cpu.cpu_times()[:2]) - before
                    for name in ("direct", "hearth"):
                        dec = statistics.median(s["decode"] for s in stats[name])
                        agg = statistics.median(s["aggregate"] for s in stats[name])
                        toks = sum(s["tokens"] for s in stats[name])
                        print(f"| {c} | {name} | {dec:.1f} | {agg:.1f} | "
                              f"{1000 * cpu[name] / toks:.3f} |")  # fmt: skip
                    ratios[c] = statistics.median(s["decode"] for s in stats["hearth"]) / (
                        statistics.median(s["decode"] for s in stats["direct"])
                    )
                for c, ratio in ratios.items():
                    print(f"decode ratio hearth/direct at C={c}: {ratio:.3f}")

                ttft: dict[str, list[float]] = {"hearth": [], "direct": []}
                fixed = {"model": "smol", "messages": [{"role": "user", "content": "Hello"}],
                         "max_tokens": 1, "stream": True}  # fmt: skip
                for i in range(args.ttft_samples):
                    for name in ("hearth", "direct") if i % 2 == 0 else ("direct", "hearth"):
                        ttft[name].append((await one(client, paths[name], fixed))["ttft"])
                p50 = {k: 1000 * statistics.median(v) for k, v in ttft.items()}
                print(f"TTFT p50: direct {p50['direct']:.2f} ms, hearth {p50['hearth']:.2f} ms, "
                      f"added {p50['hearth'] - p50['direct']:.2f} ms "
                      f"({args.ttft_samples} samples each)")  # fmt: skip

                together = statistics.median(
                    [(await round_of(client, paths["hearth"], 8, args.tokens, rng))["aggregate"]
                     for _ in range(args.rounds)]
                )  # fmt: skip
                alone = await sequential(client, paths["hearth"], 8, args.tokens, rng)
                print(f"batching through Hearth: 8 at once {together:.1f} tok/s, one at a time "
                      f"{alone:.1f} tok/s ({together / alone:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttft-samples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2, help="engine CPU threads")
    asyncio.run(main(parser.parse_args()))
