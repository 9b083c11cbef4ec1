"""What Hearth adds to an MCP tool call: `McpService.call` (the path a conversation's run and a
Responses request take: config check, host lookup, the owner task's session, timeout, result
cap, log line) against the `mcp` SDK's own `Client.call_tool` on a session opened directly, on
the same stdio server program, side by side in one event loop, alternating batches.

Run by hand (nothing else running):
  PYTHONPATH=src .venv/bin/python bench/bench_mcp.py [--calls 200] [--rounds 5]

Prints the median per-call latency of each path and their ratio, and the time to first use (a
cold start: spawn, handshake, tool list) of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

from hearth.core.config import load_settings
from hearth.services.mcp import McpService, ServerPick

SERVER = str(Path(__file__).resolve().parent.parent / "tests" / "support" / "mcp_server.py")


async def timed_calls(call: object, count: int) -> list[float]:
    laps = []
    for n in range(count):
        start = time.perf_counter()
        await call(n)  # type: ignore[operator]
        laps.append((time.perf_counter() - start) * 1e6)
    return laps


async def main(calls: int, rounds: int) -> None:
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (the bench's lifetime)
    logging.getLogger("hearth").addHandler(sink)  # the per-call log line, as a server writes it
    logging.getLogger("hearth").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=home, env={})
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        entry = {"command": sys.executable, "args": [SERVER]}
        (settings.state_dir / "mcp.json").write_text(json.dumps({"mcpServers": {"t": entry}}))
        service = McpService(settings)
        start = time.perf_counter()
        toolset = await service.toolset([ServerPick("t")])
        hearth_cold = time.perf_counter() - start
        add = toolset.functions["add"]
        start = time.perf_counter()
        params = StdioServerParameters(command=sys.executable, args=[SERVER])
        async with Client(params, mode="legacy") as client:
            await client.list_tools()
            direct_cold = time.perf_counter() - start

            async def direct(n: int) -> None:
                await client.call_tool("add", {"a": n, "b": 1}, read_timeout_seconds=30)

            async def hearth(n: int) -> None:
                await service.call(add, json.dumps({"a": n, "b": 1}), "bench")

            direct_laps: list[float] = []
            hearth_laps: list[float] = []
            for _ in range(rounds):
                direct_laps += await timed_calls(direct, calls)
                hearth_laps += await timed_calls(hearth, calls)
        await service.aclose()
    d, h = statistics.median(direct_laps), statistics.median(hearth_laps)
    print(
        f"per call, median of {calls * rounds}: SDK direct {d:.0f} us, through Hearth {h:.0f} us "
        f"(+{h - d:.0f} us, ratio {h / d:.3f})"
    )
    print(
        f"first use (spawn, handshake, tool list): SDK direct {direct_cold:.2f} s, "
        f"Hearth {hearth_cold:.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
