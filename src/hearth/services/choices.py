"""`n` > 1: several choices for one request, which llama.cpp refuses ("n must be 1").

Each choice is its own engine request (with `seed + i` when a seed is given, so seeded choices
differ and stay reproducible); their answers are joined into one, choices indexed 0..n-1, as
OpenAI answers. Usage counts the prompt once and the completions of all choices, as OpenAI's
does. Streamed choices are read concurrently and interleaved as they come: with one engine slot
they follow each other, with several (`n_parallel`) they run side by side.

The choices' chunks are re-labelled, not rebuilt: each keeps every field the engine wrote (role
deltas, tool-call fragments, logprobs) and only its choice index, id and counters change. So they
are read as chunks (`engine_chunks`), not as typed events: rebuilding each chunk from its events
would re-serialise every token of every choice and drop the fields events do not carry, to save
nothing (no text, call or finish is gathered here, only the usage summed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import anyio

from hearth.core.errors import EngineError, HearthError, InvalidParameter
from hearth.engines.events import engine_chunks, engine_error
from hearth.engines.proxy import Answer
from hearth.services.composed import DONE, Composed, checked, dumps, event, once

MAX_CHOICES = 16
Opener = Callable[[dict[str, Any]], Awaitable[Answer]]


def choice_count(body: dict[str, Any]) -> int:
    """`n`, taken out of the body (the engine refuses it) and checked."""
    n = body.pop("n", None)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise InvalidParameter(
            f"n is the number of choices to generate, an integer from 1 to {MAX_CHOICES}.",
            param="n",
        )
    return n


def choice_bodies(body: dict[str, Any], n: int, default_seed: Any = None) -> list[dict[str, Any]]:
    """One body per choice. Seeds step by one from the request's seed (else the model's
    default), so seeded choices differ and stay reproducible."""
    seed = body.get("seed", default_seed)
    seeded = isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
    bodies = []
    for i in range(n):
        one = dict(body)
        if seeded:
            one["seed"] = seed + i
        if one.get("stream"):
            one["stream_options"] = {**stream_options(one), "include_usage": True}
        bodies.append(one)
    return bodies


def stream_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request's `stream_options`, checked (a client's typo must be a 400, not a 500)."""
    options = body.get("stream_options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidParameter(
            'stream_options must be an object such as {"include_usage": true}.',
            param="stream_options",
        )
    return options


def include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streamed answer ends with a usage chunk (OpenAI's `include_usage`)."""
    return bool(stream_options(body).get("include_usage"))


async def open_choices(
    open_one: Opener, body: dict[str, Any], n: int, *, model: str, default_seed: Any = None
) -> Composed:
    """One answer with `n` choices, each from its own engine request."""
    bodies = choice_bodies(body, n, default_seed)
    if not body.get("stream"):
        answers = await _read_all(open_one, bodies, model)
        return Composed(once(dumps(merge_whole(answers))), event_stream=False, under=[])
    usage = include_usage(body)
    first = await checked(await open_one(bodies[0]), model)
    merged = merged_stream(open_one, first, bodies[1:], model=model, include_usage=usage)
    return Composed(merged, event_stream=True, under=[first])


async def _read_all(open_one: Opener, bodies: list[dict[str, Any]], model: str) -> list[Any]:
    async def read(body: dict[str, Any]) -> Any:
        answer = await checked(await open_one(body), model)
        return json.loads(await answer.read())

    tasks = [asyncio.ensure_future(read(body)) for body in bodies]
    try:
        return list(await asyncio.gather(*tasks))  # the first failure is raised as it is
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def merge_whole(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The answers of one choice each as one answer: choices indexed 0..n-1, usage summed."""
    merged = dict(answers[0])
    choices: list[Any] = []
    completion_tokens = 0
    for i, answer in enumerate(answers):
        for choice in answer.get("choices") or []:
            choices.append({**choice, "index": i})
        usage = answer.get("usage")
        if isinstance(usage, dict):
            completion_tokens += int(usage.get("completion_tokens") or 0)
    merged["choices"] = choices
    usage = merged.get("usage")
    if isinstance(usage, dict):
        prompt = int(usage.get("prompt_tokens") or 0)
        merged["usage"] = {**usage, "completion_tokens": completion_tokens,
                           "total_tokens": prompt + completion_tokens}  # fmt: skip
    return merged


async def merged_stream(
    open_one: Opener,
    first: Answer,
    rest: list[dict[str, Any]],
    *,
    model: str,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    """The choices' events interleaved as they arrive, re-indexed, with one usage at the end."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=64)

    async def pump(index: int, body: dict[str, Any] | None) -> None:
        """One choice's events into the queue, then its end (None). Cancelled, it puts
        nothing more: the reader is gone, and a full queue would block it forever."""
        answer = first if body is None else None
        try:
            if answer is None:
                answer = await checked(await open_one(body or {}), model)
            async with aclosing(engine_chunks(answer.stream())) as chunks:
                async for chunk in chunks:
                    await queue.put((index, chunk))
            await queue.put((index, None))
        except HearthError as exc:
            await queue.put((index, exc.to_openai()))
        except Exception as exc:  # the engine went away mid-answer (not a cancellation)
            await queue.put((index, EngineError(f"A choice failed: {exc}").to_openai()))
        finally:
            if answer is not None:
                with anyio.CancelScope(shield=True):
                    await answer.close()

    tasks = [asyncio.create_task(pump(0, None))]
    tasks += [asyncio.create_task(pump(i + 1, body)) for i, body in enumerate(rest)]
    try:
        async for part in _interleave(queue, len(tasks), include_usage):
            yield part
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _interleave(
    queue: asyncio.Queue[tuple[int, Any]], running: int, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    head: dict[str, Any] = {}
    prompt_tokens = completion_tokens = 0
    while running:
        index, chunk = await queue.get()
        if chunk is None:
            running -= 1
            continue
        if engine_error(chunk) is not None:
            yield event(chunk)
            return
        usage = chunk.pop("usage", None)
        chunk.pop("timings", None)
        if isinstance(usage, dict):
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens += int(usage.get("completion_tokens") or 0)
        if not head:
            head = {k: chunk.get(k) for k in ("id", "object", "created", "model")}
        choices = chunk.get("choices") or []
        if not choices:
            continue
        for choice in choices:
            choice["index"] = index
        yield event({**chunk, "id": head["id"]})
    if include_usage:
        total = prompt_tokens + completion_tokens
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": total}  # fmt: skip
        yield event({**head, "choices": [], "usage": usage})
    yield DONE
