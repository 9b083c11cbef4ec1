"""Replicas on CPU: time to first token of multi-turn chats, prefix-affine vs least-busy routing.

Run by hand:  .venv/bin/python bench/bench_replicas.py [--rounds 3] [--json-out replicas.json]

One real `hearth serve` child (its own temporary home) holds two model folders that share one
SmolLM2-135M (Q4_1) file (a hard link), both with `replicas: 2`:

- `rep-prefix`  engine_parameters.replica_routing "prefix" (prefix-affine, Hearth's default)
- `rep-busy`    engine_parameters.replica_routing "least-busy" (plain least-busy)

Both are started and warmed up, then rounds alternate A/B/A/B/... (the first mode of each pair
alternates too), so noise on this shared machine hits both. A round is 8 conversations running
at once, 4 turns each, streamed; every conversation has the same long system prompt and its own
first user message, and each turn appends the assistant's reply and a new user message, so the
prompt grows to ~640 tokens by turn 4 while `max_tokens` stays small (16; prefill dominates).
The first user message carries the round and conversation number, so no round reuses another's
conversation prefix (only the shared system prompt); both modes send the same messages. Before
each turn a conversation pauses 0-4 s at random (a user reading and typing, scaled down): without
it a closed loop flatters least-busy, since the replica a conversation just left is the least busy
one the moment its next turn arrives. Each replica has 4 slots (8 in all, one per conversation)
and one CPU thread.

Measured per turn: time to first token (send -> first streamed content chunk), and from the
engine's own `timings` in the last chunk, how many prompt tokens it had to evaluate (`prompt_n`)
vs take from its prompt cache (`cache_n`). Turn 1 is a cold conversation in both modes; turns 2-4
show whether a follow-up reached the replica that holds its prefix.

`--no-replicas` leaves out `replicas` and `replica_routing` (both models then run one engine):
a plumbing test for Hearth versions without replicas, not a comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.smollm import FILENAME, smollm2_path

MODES = {"prefix": "rep-prefix", "least-busy": "rep-busy"}

TOPICS = [
    *("river", "mountain", "garden", "city", "window", "story", "morning", "evening", "music"),
    *("paper", "letter", "market", "forest", "bridge", "winter", "summer", "station", "house"),
    *("lantern", "harbor", "orchard", "valley", "library", "kitchen", "meadow", "island"),
]


def system_prompt(words: int) -> str:
    """A long, fixed system prompt shared by every conversation (~1.3 tokens per word)."""
    rng = random.Random(7)
    rules = " ".join(rng.choice(TOPICS) for _ in range(words))
    return (
        "You are a patient assistant for a small town's visitor centre. Answer briefly and "
        "plainly, in one or two sentences. Background notes for every answer follow. " + rules
    )


def user_message(rng: random.Random, tag: str, words: int) -> str:
    return f"[{tag}] Tell me about " + " ".join(rng.choices(TOPICS, k=words)) + "."


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default); nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the server -----------------------------------------------------------------------------


def make_home(home: Path, args: argparse.Namespace) -> None:
    """models/<id>/ for both modes, sharing one GGUF by hard link (a copy if linking fails)."""
    source = smollm2_path()
    for mode, model_id in MODES.items():
        folder = home / "models" / model_id
        folder.mkdir(parents=True)
        try:
            os.link(source, folder / FILENAME)
        except OSError:
            shutil.copyfile(source, folder / FILENAME)
        params: dict[str, Any] = {
            "ctx_len": args.ctx_len,
            "n_parallel": args.n_parallel,
            "cpu_threads": args.threads,
            "keep_alive": -1,
        }
        if not args.no_replicas:
            params["replicas"] = args.replicas
            params["replica_routing"] = mode
        (folder / "model.json").write_text(
            json.dumps({"engine_parameters": params}, indent=1), encoding="utf-8"
        )


class Hearth:
    """`python -m hearth serve` as a child process; its output goes to a log file."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", "--home", str(home), "serve", "--port",
             str(self.port), "--no-starter", "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"hearth exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"hearth did not become healthy in {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- the load -------------------------------------------------------------------------------


async def chat(
    client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]], tokens: int
) -> dict[str, Any]:
    """One streamed chat request: TTFT, the reply text, usage and the engine's timings."""
    body = {
        "model": model, "messages": messages, "max_tokens": tokens, "ignore_eos": True,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {(await resp.aread())[:500]!r}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("error"):
                raise RuntimeError(str(event["error"]))
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
    if first is None:
        raise RuntimeError(f"{model}: no content streamed")
    return {
        "ttft": first - t0,
        "reply": "".join(parts),
        "prompt_tokens": usage.get("prompt_tokens"),
        "prompt_n": timings.get("prompt_n"),  # prompt tokens the engine evaluated
        "cache_n": timings.get("cache_n"),  # prompt tokens it took from its cache
    }


async def conversation(
    client: httpx.AsyncClient, url: str, model: str, tag: str, args: argparse.Namespace,
    system: str, rng: random.Random,
) -> list[dict[str, Any]]:  # fmt: skip
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user_message(rng, tag, args.user_words)},
    ]
    turns = []
    for turn in range(1, args.turns + 1):
        # A random pause before each turn (a user reading and typing, scaled down), so other
        # conversations' requests come in between, as they would in real use.
        await asyncio.sleep(rng.uniform(0, args.think_ms / 1000))
        result = await chat(client, url, model, messages, args.max_tokens)
        result["turn"] = turn
        turns.append(result)
        messages.append({"role": "assistant", "content": result["reply"]})
        messages.append(
            {
                "role": "user",
                "content": user_message(rng, f"{tag} turn {turn + 1}", args.user_words),
            }
        )
    for t in turns:
        t.pop("reply")
    return turns


async def one_round(
    client: httpx.AsyncClient, url: str, mode: str, r: int, args: argparse.Namespace, system: str
) -> list[dict[str, Any]]:
    # One generator per conversation, seeded by round and conversation: both modes send the
    # same messages whatever the timing (replies match too, at temperature 0).
    t0 = time.perf_counter()
    convs = await asyncio.gather(
        *(conversation(client, url, MODES[mode], f"round {r} conversation {c}", args, system,
                       random.Random(f"{r}-{c}"))
          for c in range(args.conversations))
    )  # fmt: skip
    wall = time.perf_counter() - t0
    out = [
        {**t, "mode": mode, "round": r, "conversation": c} for c, ts in enumerate(convs) for t in ts
    ]
    later = [t["ttft"] for t in out if t["turn"] > 1]
    print(f"  round {r} {mode:<10} {wall:6.1f} s  TTFT p50 turn 1 "
          f"{1000 * pct([t['ttft'] for t in out if t['turn'] == 1], 50):7.0f} ms, turns 2+ "
          f"{1000 * pct(later, 50):7.0f} ms", flush=True)  # fmt: skip
    return out


def mark_hits(results: list[dict[str, Any]]) -> None:
    """A follow-up turn "hit" when the engine took at least the whole previous turn's prompt
    of its conversation from its cache (it reached the replica holding that prefix)."""
    prev = {(t["mode"], t["round"], t["conversation"], t["turn"]): t for t in results}
    for t in results:
        before = prev.get((t["mode"], t["round"], t["conversation"], t["turn"] - 1))
        if before is None or before.get("prompt_tokens") is None or t.get("cache_n") is None:
            t["hit"] = None
        else:
            t["hit"] = t["cache_n"] >= before["prompt_tokens"]


def summarize(results: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    mark_hits(results)
    rows = []
    groups = [("1", [1]), (f"2-{turns}" if turns > 2 else "2", list(range(2, turns + 1)))]
    if turns > 2:
        groups += [(str(t), [t]) for t in range(2, turns + 1)]
    for label, which in groups:
        for mode in MODES:
            sel = [t for t in results if t["mode"] == mode and t["turn"] in which]
            ttft = [1000 * t["ttft"] for t in sel]

            def mean(key: str, sel: list[dict[str, Any]] = sel) -> float | None:
                vals = [t[key] for t in sel if t.get(key) is not None]
                return statistics.mean(vals) if vals else None

            rows.append({
                "turns": label, "mode": mode, "n": len(sel),
                "ttft_p50_ms": pct(ttft, 50), "ttft_p95_ms": pct(ttft, 95),
                "ttft_mean_ms": statistics.mean(ttft) if ttft else float("nan"),
                "prompt_tokens": mean("prompt_tokens"), "evaluated": mean("prompt_n"),
                "cached": mean("cache_n"),
                "hits": sum(1 for t in sel if t.get("hit")),
                "hits_known": sum(1 for t in sel if t.get("hit") is not None),
            })  # fmt: skip
    return rows


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def print_table(rows: list[dict[str, Any]]) -> dict[str, float]:
    print("| turns | routing | requests | TTFT p50 ms | TTFT p95 ms | TTFT mean ms | prompt tokens "
          "| evaluated by engine | from its cache | previous turn cached |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        hits = f"{r['hits']}/{r['hits_known']}" if r["hits_known"] else "-"
        print(f"| {r['turns']} | {r['mode']} | {r['n']} | {fmt(r['ttft_p50_ms'])} | "
              f"{fmt(r['ttft_p95_ms'])} | {fmt(r['ttft_mean_ms'])} | {fmt(r['prompt_tokens'])} | "
              f"{fmt(r['evaluated'])} | {fmt(r['cached'])} | {hits} |")  # fmt: skip
    by = {(r["turns"], r["mode"]): r for r in rows}
    ratios = {}
    for label in sorted({r["turns"] for r in rows}, key=lambda s: (len(s), s)):
        a, b = by[(label, "least-busy")], by[(label, "prefix")]
        for q in ("p50", "p95"):
            key = f"ttft_{q}_ms"
            ratios[f"turns {label} {q}"] = a[key] / b[key] if b[key] else float("nan")
    print()
    for label in dict.fromkeys(r["turns"] for r in rows[:4]):  # turn 1, then the later turns
        p50, p95 = ratios[f"turns {label} p50"], ratios[f"turns {label} p95"]
        print(f"TTFT least-busy / prefix, turns {label}: p50 {p50:.2f}x, p95 {p95:.2f}x")
    return ratios


async def main(args: argparse.Namespace) -> None:
    system = system_prompt(args.system_words)
    with tempfile.TemporaryDirectory(prefix="hearth-bench-replicas-") as tmp:
        home = Path(tmp) / "home"
        make_home(home, args)
        hearth = Hearth(home, Path(tmp) / "hearth.log")
        try:
            hearth.wait_healthy()
            limits = httpx.Limits(max_connections=64, keepalive_expiry=2)
            async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
                for mode, model_id in MODES.items():
                    t0 = time.perf_counter()
                    resp = await client.post(f"{hearth.url}/v1/models/{model_id}/start")
                    if resp.status_code != 200:
                        raise SystemExit(f"start {model_id}: HTTP {resp.status_code} {resp.text}")
                    print(f"started {model_id} ({mode}) in {time.perf_counter() - t0:.1f} s")
                # Warm-up: as many requests at once as there are slots, each with the shared
                # system prompt, so every slot of every replica holds it in both modes and
                # turn 1 measures a new conversation, not the first sight of the system prompt.
                slots = args.n_parallel * (1 if args.no_replicas else args.replicas)
                for model_id in MODES.values():
                    warm = [[{"role": "system", "content": system},
                             {"role": "user", "content": f"Warm-up {i}: say hi."}]
                            for i in range(slots)]  # fmt: skip
                    await asyncio.gather(*(chat(client, hearth.url, model_id, m, 4) for m in warm))
                running = (await client.get(f"{hearth.url}/v1/running")).json()["data"]
                for m in running:
                    reps = m.get("replicas")
                    print(f"running {m['id']}: pid {m.get('pid')} port {m.get('port')}"
                          + (f", replicas {[(r.get('pid'), r.get('port')) for r in reps]}"
                             if reps else ", no 'replicas' field"))  # fmt: skip
                print(
                    f"{args.conversations} conversations x {args.turns} turns at once, "
                    f"{args.max_tokens} tokens per reply, replicas "
                    f"{'off' if args.no_replicas else args.replicas}, n_parallel "
                    f"{args.n_parallel}, ctx_len {args.ctx_len}, cpu_threads {args.threads}"
                )
                results: list[dict[str, Any]] = []
                t_all = time.perf_counter()
                for r in range(args.rounds):
                    order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
                    for mode in order:
                        results += await one_round(client, hearth.url, mode, r, args, system)
                print(f"measured in {time.perf_counter() - t_all:.0f} s\n")
                after = (await client.get(f"{hearth.url}/v1/running")).json()["data"]
        finally:
            hearth.stop()
    rows = summarize(results, args.turns)
    ratios = print_table(rows)
    for m in after:
        for i, rep in enumerate(m.get("replicas") or []):
            print(f"{m['id']} replica {i}: requests_served {rep.get('requests_served')}, "
                  f"status {rep.get('status')}")  # fmt: skip
    if args.json_out:
        meta = {k: v for k, v in vars(args).items() if k != "json_out"}
        Path(args.json_out).write_text(json.dumps(
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": meta, "rows": rows,
             "ratios": ratios, "running_after": after, "requests": results}, indent=1
        ))  # fmt: skip
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds per routing mode")
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per reply")
    parser.add_argument("--system-words", type=int, default=300, help="shared system prompt")
    parser.add_argument("--user-words", type=int, default=50, help="words per user message")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=4000,
        help="random pause before each turn, 0 to this many ms",
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--n-parallel", type=int, default=4, help="slots per replica")
    parser.add_argument("--ctx-len", type=int, default=2048, help="context per slot")
    parser.add_argument("--threads", type=int, default=1, help="engine CPU threads per replica")
    parser.add_argument(
        "--no-replicas",
        action="store_true",
        help="omit replicas/replica_routing (plumbing test without replicas)",
    )
    parser.add_argument("--json-out", default=None)
    asyncio.run(main(parser.parse_args()))
