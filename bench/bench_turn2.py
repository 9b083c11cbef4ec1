"""Turn 2 of an agent's conversation: time to first token through Hearth vs the engine directly.

Run by hand:  .venv/bin/python bench/bench_turn2.py [--rounds 6] [--system-words 3800]
              [--parallel 2] [--replicas 2] [--interleave]

Agents resend the whole conversation every turn, so turn 2 is fast only when the engine finds
turn 1 (the long system prompt, the first question and its answer) in its prompt cache. A real
`hearth serve` child serves SmolLM2-135M (Q4_1, Hermes tool template, `--parallel` slots; with
`--replicas 2`, two engine processes under prefix routing). Every conversation shares one
agent-like system prompt (~1.2 tokens a word: 3800 words are ~4.5k tokens), then has its own
first question (a note of `--turn1-words` words), the model's answer, and a short second one.

Paths (each conversation's two turns go down one path, as an agent's would):
- direct: the engine process Hearth started, at its own port (its per-launch key read from its
  environment, as bench_proxy does); with replicas, the replica chosen for the conversation;
- v1, messages, responses, ollama: Hearth's /v1/chat/completions (bytes passed through) and the
  translated faces /v1/messages (Claude Code), /v1/responses (Codex), /api/chat;
- tools_auto, tools_named, tools_required: /v1/chat/completions with one tool; "auto" passes
  through, a named or "required" `tool_choice` is enforced by Hearth in two engine requests
  (`/apply-template`, then `/v1/completions` under a JSON schema: services/toolcalls.py).
Turn 1 is sent whole (not timed); turn 2 is streamed, and its TTFT is the time to the first event
that carries a generated token (text or a tool call). Each round runs every path once, the order
rotating; by default a conversation's turn 2 follows its turn 1 at once, as an agent's does;
`--interleave` sends the turn 1s of two paths before their turn 2s, so the engine has to pick the
slot (or Hearth the replica) that holds each conversation. Ratios are taken per round against
direct (tools_named and tools_required also against tools_auto) and their median is reported,
with the spread. The cache columns are the engine's own counts from the answer: `timings`
(cache_n, prompt_n) on the OpenAI paths, `cached_tokens` on /v1/responses; /v1/messages and
/api/chat do not carry them. A turn 2 "hit" re-reads fewer than 100 prompt tokens.

Before the rounds, a prompt check: each face's turn 1 and turn 2 bodies (a text conversation and
one with a tool call) are translated by the face's own code and rendered by the engine's
/apply-template, twice: the renderings must be identical, equal to the OpenAI body's, and turn 2's
must start with turn 1's, or the prefix cache cannot match. Goal (issue 24, point 6): <= 1.1x.
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
from bench_proxy import WORDS, engine_key
from bench_tools import HERMES, TOOL
from support.engines import add_smol
from support.server import HearthProcess

from hearth.server.anthropic.translate import messages_call
from hearth.server.ollama.translate import chat_call
from hearth.server.responses.translate import call as responses_call

PATHS = (
    "direct",
    "v1",
    "messages",
    "responses",
    "ollama",
    "tools_auto",
    "tools_named",
    "tools_required",
)
HIT_BELOW = 100  # uncached prompt tokens of a turn 2 that found turn 1 in the cache
TURN2 = "Thanks. Now name one more thing to check, in a few words."


def system_prompt(words: int, rng: random.Random) -> str:
    """An agent's long instructions: numbered rules, the same for every conversation."""
    rules = ["You are Hearth Agent, a careful assistant working in a terminal."]
    count = 0
    while count < words:
        a, b, c = rng.sample(WORDS, 3)
        rules.append(
            f"{len(rules)}. When the user mentions the {a}, check the {b} first and answer "
            f"about the {c} in one short sentence."
        )
        count += 22
    return "\n".join(rules)


def first_question(k: int, words: int, rng: random.Random) -> str:
    note = " ".join(rng.choices(WORDS, k=words))
    return f"Task {k}: here is a note. {note}. What is the note mostly about? One sentence."


# ---- bodies per path -------------------------------------------------------------------------


def openai_body(conv: list[dict[str, Any]], tokens: int, path: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "smol",
        "messages": conv,
        "max_tokens": tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    if path.startswith("tools"):
        body["tools"] = [TOOL]
        body["tool_choice"] = {
            "tools_auto": "auto",
            "tools_named": {"type": "function", "function": {"name": "lookup"}},
            "tools_required": "required",
        }[path]
    return body


def face_body(path: str, conv: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
    """`conv` (OpenAI messages, text only, first one the system prompt) in the path's dialect."""
    system, rest = conv[0]["content"], conv[1:]
    if path == "messages":  # as Claude Code sends it: blocks, the last one marked for caching
        mark = {"cache_control": {"type": "ephemeral"}}
        blocks = [
            {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in rest
        ]
        blocks[-1]["content"][0].update(mark)
        return {
            "model": "smol",
            "system": [{"type": "text", "text": system, **mark}],
            "messages": blocks,
            "max_tokens": tokens,
            "temperature": 0,
        }
    if path == "responses":  # as Codex sends it: typed items and parts
        kinds = {"user": "input_text", "assistant": "output_text"}
        items = [
            {
                "type": "message",
                "role": m["role"],
                "content": [{"type": kinds[m["role"]], "text": m["content"]}],
            }
            for m in rest
        ]
        return {
            "model": "smol",
            "instructions": system,
            "input": items,
            "max_output_tokens": max(tokens, 16),
            "temperature": 0,
        }
    if path == "ollama":
        return {
            "model": "smol",
            "messages": conv,
            "stream": False,
            "options": {"num_predict": tokens, "temperature": 0},
        }
    return openai_body(conv, tokens, path)


URLS = {"messages": "/v1/messages", "responses": "/v1/responses", "ollama": "/api/chat"}


def answer_messages(path: str, whole: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn 1's answer as OpenAI messages to append (a tool call gets a made-up result)."""
    if path == "messages":
        text = "".join(b.get("text", "") for b in whole["content"] if b["type"] == "text")
        return [{"role": "assistant", "content": text}]
    if path == "responses":
        text = "".join(
            part.get("text", "")
            for item in whole["output"]
            if item["type"] == "message"
            for part in item["content"]
        )
        return [{"role": "assistant", "content": text}]
    if path == "ollama":
        return [{"role": "assistant", "content": whole["message"]["content"]}]
    message = whole["choices"][0]["message"]
    out = {"role": "assistant", "content": message.get("content") or ""}
    calls = message.get("tool_calls") or []
    if not calls:
        return [out]
    out["tool_calls"] = [{k: c[k] for k in ("id", "type", "function")} for c in calls]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "a small river"} for c in calls]
    return [out, *results]


# ---- reading a streamed turn 2 ---------------------------------------------------------------


def _token_and_cache(path: str, line: str) -> tuple[bool, tuple[int, int] | None]:
    """Whether this stream line carries a generated token; (cached, uncached) when it says."""
    if path == "ollama":
        event = json.loads(line) if line else {}
        return bool((event.get("message") or {}).get("content")), None
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False, None
    event = json.loads(line[6:])
    if event.get("error") or event.get("type") == "error":
        raise RuntimeError(line[:500])
    if path == "messages":
        return event["type"] == "content_block_delta", None
    if path == "responses":
        if event["type"] in ("response.completed", "response.incomplete"):
            usage = event["response"]["usage"]
            cached = usage["input_tokens_details"]["cached_tokens"]
            return False, (cached, usage["input_tokens"] - cached)
        return event["type"] in ("response.output_text.delta", "response.output_item.added") and (
            event["type"] != "response.output_item.added"
            or event["item"]["type"] == "function_call"
        ), None
    timings = event.get("timings") or (event.get("usage") or {}).get("timings")
    cache = (timings["cache_n"], timings["prompt_n"]) if timings else None
    token = any(
        (c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")
        for c in event.get("choices") or []
    )
    return token, cache


async def turn2(
    client: httpx.AsyncClient, url: str, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[float, tuple[int, int] | None]:
    """TTFT of one streamed request (the end of the stream if no token came) and its cache."""
    t0 = time.perf_counter()
    first = None
    cache = None
    async with client.stream("POST", url, json={**body, "stream": True}, headers=headers) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: {resp.status_code} {(await resp.aread())[:500]!r}")
        async for line in resp.aiter_lines():
            token, said = _token_and_cache(path, line)
            if token and first is None:
                first = time.perf_counter()
            cache = said or cache
    return (first or time.perf_counter()) - t0, cache


# ---- the bench -------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base: str,
        engines: list[dict[str, Any]],
        args: argparse.Namespace,
        system: str,
    ) -> None:
        self.client, self.base, self.engines, self.args = client, base, engines, args
        self.system = system
        self.rng = random.Random(24)
        self.count = 0

    def _target(self, path: str, k: int) -> tuple[str, dict[str, str]]:
        if path == "direct":
            engine = self.engines[k % len(self.engines)]
            return engine["url"] + "/v1/chat/completions", engine["headers"]
        return self.base + URLS.get(path, "/v1/chat/completions"), {}

    async def turn1(self, path: str) -> tuple[int, list[dict[str, Any]]]:
        """A new conversation's first turn, sent whole; returns its number and the history."""
        self.count += 1
        k = self.count
        conv = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": first_question(k, self.args.turn1_words, self.rng)},
        ]
        first_path = "tools_auto" if path.startswith("tools") else path
        url, headers = self._target(first_path, k)
        body = face_body(first_path, conv, self.args.answer_tokens)
        try:
            resp = await self.client.post(url, json=body, headers=headers)
        except httpx.RemoteProtocolError:
            # llama.cpp may close a kept-alive connection the pool still holds (seen after a
            # long prompt read): turn 1 is not timed, so it is sent once more on a new one
            resp = await self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{first_path} ({url}): {exc!r}") from exc
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:500]}")
        conv += answer_messages(first_path, resp.json())
        return k, [*conv, {"role": "user", "content": TURN2}]

    async def turn2(self, path: str, k: int, conv: list[dict[str, Any]]) -> dict[str, Any]:
        url, headers = self._target(path, k)
        body = face_body(path, conv, self.args.tokens)
        body.pop("stream", None)
        took, cache = await turn2(self.client, url, path, body, headers)
        return {"ttft": took, "cache": cache}

    async def round(self, r: int) -> dict[str, dict[str, Any]]:
        order = list(PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)])
        out: dict[str, dict[str, Any]] = {}
        group = 2 if self.args.interleave else 1
        for i in range(0, len(order), group):
            names = order[i : i + group]
            started = [(name, await self.turn1(name)) for name in names]
            for name, (k, conv) in started:
                out[name] = await self.turn2(name, k, conv)
        return out


async def prompt_check(client: httpx.AsyncClient, engine: dict[str, Any], system: str) -> None:
    """Each face's rendering of turn 1 and turn 2, by the engine's template (module doc)."""
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"word": "river"}'},
    }
    text_conv = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": TURN2},
    ]
    tool_conv = [
        *text_conv[:2],
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": "a small river"},
        {"role": "user", "content": TURN2},
    ]
    faces: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {
        "v1": lambda conv: {"messages": conv},
        "messages": lambda conv: messages_call(_anthropic(conv)).body,
        "responses": lambda conv: responses_call(_responses(conv)).body,
        "ollama": lambda conv: chat_call(_ollama(conv), "smol").body,
    }

    async def render(body: dict[str, Any]) -> str:
        keys = {k: body[k] for k in ("messages", "tools") if k in body}
        resp = await client.post(
            engine["url"] + "/apply-template", json=keys, headers=engine["headers"]
        )
        resp.raise_for_status()
        return str(resp.json()["prompt"])

    print("| face | renders twice alike | same prompt as /v1 | turn 2 starts with turn 1 |")
    print("|---|---|---|---|")
    for face, translate in faces.items():
        results = []
        for conv in (text_conv, tool_conv):
            first = [await render(translate(conv[:2])) for _ in range(2)]
            second = [await render(translate(conv)) for _ in range(2)]
            reference = await render({"messages": conv})
            results.append(
                (
                    first[0] == first[1] and second[0] == second[1],
                    second[0] == reference,
                    second[0].startswith(first[0].rstrip()),
                )
            )
        cells = [" / ".join("yes" if r[i] else "**no**" for r in results) for i in range(3)]
        print(f"| {face} (text / tool call) | " + " | ".join(cells) + " |")


def _anthropic(conv: list[dict[str, Any]]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for m in conv[1:]:
        if m["role"] == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m["tool_call_id"],
                "content": m["content"],
            }
            messages.append({"role": "user", "content": [block]})
        elif m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": m["tool_calls"][0]["id"],
                            "name": fn["name"],
                            "input": json.loads(fn["arguments"]),
                        }
                    ],
                }
            )
        else:
            messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] == "user" and len(messages) > 1 and messages[-2]["role"] == "user":
        messages[-2:] = [
            {"role": "user", "content": [*messages[-2]["content"], {"type": "text", "text": TURN2}]}
        ]
    return {"model": "smol", "system": conv[0]["content"], "messages": messages, "max_tokens": 8}


def _responses(conv: list[dict[str, Any]]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for m in conv[1:]:
        if m["role"] == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m["tool_call_id"],
                    "output": m["content"],
                }
            )
        elif m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            items.append(
                {
                    "type": "function_call",
                    "call_id": m["tool_calls"][0]["id"],
                    "name": fn["name"],
                    "arguments": fn["arguments"],
                }
            )
        else:
            items.append({"type": "message", "role": m["role"], "content": m["content"]})
    return {"model": "smol", "instructions": conv[0]["content"], "input": items}


def _ollama(conv: list[dict[str, Any]]) -> dict[str, Any]:
    messages = []
    for m in conv:
        out = {"role": m["role"], "content": m["content"]}
        if m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            out["tool_calls"] = [
                {"function": {"name": fn["name"], "arguments": json.loads(fn["arguments"])}}
            ]
        messages.append(out)
    return {"model": "smol", "messages": messages}


# ---- report ----------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def report(rounds: list[dict[str, dict[str, Any]]]) -> None:
    print(
        "| path | turn 2 TTFT ms (median) | ratio to direct (median, spread) "
        "| cached / re-read prompt tokens (median) | hits |"
    )
    print("|---|---:|---:|---:|---:|")
    for path in PATHS:
        ttfts = [r[path]["ttft"] for r in rounds]
        ratios = [r[path]["ttft"] / r["direct"]["ttft"] for r in rounds]
        caches = [r[path]["cache"] for r in rounds if r[path]["cache"] is not None]
        if caches:
            cached = statistics.median(c[0] for c in caches)
            fresh = statistics.median(c[1] for c in caches)
            hits = f"{sum(c[1] < HIT_BELOW for c in caches)}/{len(caches)}"
            cache = f"{cached:.0f} / {fresh:.0f}"
        else:
            cache, hits = "not reported", "-"
        print(
            f"| {path} | {statistics.median(ttfts) * 1000:.1f} | {_spread(ratios)} | {cache} "
            f"| {hits} |"
        )
    for forced in ("tools_named", "tools_required"):
        diffs = [(r[forced]["ttft"] - r["tools_auto"]["ttft"]) * 1000 for r in rounds]
        ratios = [r[forced]["ttft"] / r["tools_auto"]["ttft"] for r in rounds]
        print(
            f"{forced} vs tools_auto: added TTFT {statistics.median(diffs):+.1f} ms (median of "
            f"pairs), ratio {_spread(ratios)}"
        )


async def engines_of(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    running = (await client.get(f"{base}/v1/running")).json()["data"][0]
    replicas = running.get("replicas") or [{"pid": running["pid"], "port": running["port"]}]
    return [
        {
            "url": f"http://127.0.0.1:{r['port']}",
            "headers": {"Authorization": f"Bearer {engine_key(r['pid'])}"},
        }
        for r in replicas
    ]


async def main(args: argparse.Namespace) -> None:
    system = system_prompt(args.system_words, random.Random(6))
    params = {
        "ctx_len": args.ctx_len,
        "n_parallel": args.parallel,
        "chat_template": HERMES,
        "cpu_threads": args.threads,
    }
    if args.replicas > 1:
        params["replicas"] = args.replicas
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        add_smol(home, "smol", params)
        with HearthProcess(home, "--no-starter", "--log-level", "warning") as proc:
            # expire idle connections before uvicorn's and llama.cpp's 5 s keep-alive does
            limits = httpx.Limits(keepalive_expiry=2)
            async with httpx.AsyncClient(timeout=None, limits=limits) as client:
                # loaded for the whole run: direct requests do not renew Hearth's keep-alive
                start = {"keep_alive": "1h"}
                url = f"{proc.url}/v1/models/smol/start"
                (await client.post(url, json=start)).raise_for_status()
                engines = await engines_of(client, proc.url)
                await prompt_check(client, engines[0], system)
                bench = Bench(client, proc.url, engines, args, system)
                t0 = time.perf_counter()
                for k in range(len(engines)):  # the shared system prompt, once per engine
                    await bench.turn2("direct", k, (await bench.turn1("direct"))[1])
                print(
                    f"warm-up (system prompt read once per engine): "
                    f"{time.perf_counter() - t0:.1f} s"
                )
                rounds = [await bench.round(r) for r in range(args.rounds)]
    print(
        f"SmolLM2-135M Q4_1 + Hermes template, {args.parallel} slots x {args.replicas} "
        f"engine(s), {args.threads} threads each, system prompt {args.system_words} words, "
        f"turn 1 note {args.turn1_words} words, {args.rounds} rounds"
        f"{', interleaved' if args.interleave else ''}"
    )
    report(rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--system-words", type=int, default=3800, help="~1.2 tokens a word")
    parser.add_argument("--turn1-words", type=int, default=150)
    parser.add_argument("--answer-tokens", type=int, default=24, help="turn 1's answer")
    parser.add_argument("--tokens", type=int, default=4, help="turn 2's max tokens")
    parser.add_argument("--parallel", type=int, default=2, help="slots per engine")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--ctx-len", type=int, default=8192, help="per slot")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per engine")
    parser.add_argument("--interleave", action="store_true")
    asyncio.run(main(parser.parse_args()))
