"""The watch of an engine's bytes until the first token (`respond._Watch`), a pure function of
the bytes: where the answer begins, what the engine's prompt progress becomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hearth.engines.events import EventReader, PromptProgress, engine_chunks
from hearth.server import respond
from hearth.server.respond import _Watch

PROGRESS = b'data: {"choices":[{"delta":{"role":"assistant","content":null}}],"prompt_progress":{"total":300,"cache":0,"processed":120,"time_ms":5.5}}\n\n'  # noqa: E501
ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
TOKEN = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


async def _source(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def watched(parts: list[bytes], *, progress: bool = True) -> tuple[bytes, bool]:
    watch = _Watch(progress)

    async def run() -> bytes:
        return b"".join([chunk async for chunk in watch.chunks(_source(parts))])

    return asyncio.run(run()), watch.flowing


def test_progress_becomes_a_comment_and_the_answer_passes_as_it_is() -> None:
    out, flowing = watched([b": \n\n", PROGRESS, ROLE + TOKEN, b"data: [DONE]\n\n"])
    assert out == b": \n\n: prompt 120/300\n\n" + ROLE + TOKEN + b"data: [DONE]\n\n"
    assert flowing


def test_an_event_split_across_reads_is_read_whole() -> None:
    cut = len(PROGRESS) // 2
    out, flowing = watched([PROGRESS[:cut], PROGRESS[cut:] + ROLE[:7], ROLE[7:], TOKEN])
    assert out == b": prompt 120/300\n\n" + ROLE + TOKEN and flowing


def test_a_client_that_asked_gets_the_chunks() -> None:
    out, flowing = watched([PROGRESS, ROLE], progress=False)
    assert out == PROGRESS + ROLE and flowing


def test_crlf_upstream_passes_untouched() -> None:
    crlf = b'data: {"choices":[]}\r\n\r\n'
    out, flowing = watched([crlf[:9], crlf[9:]])
    assert out == crlf and flowing


def test_nothing_but_comments_never_flows() -> None:
    out, flowing = watched([b": \n\n", b": \n\n"])
    assert out == b": \n\n: \n\n" and not flowing


def test_progress_chunks_are_no_part_of_the_answer() -> None:
    async def parsed() -> list[dict[str, object]]:
        return [chunk async for chunk in engine_chunks(_source([PROGRESS, TOKEN]))]

    assert asyncio.run(parsed()) == [{"choices": [{"delta": {"content": "Hi"}}]}]
    chunk = {"prompt_progress": {"total": 300, "cache": 20, "processed": 120, "time_ms": 5.5}}
    assert EventReader().chunk(chunk) == [PromptProgress(300, 20, 120, 5.5)]
    assert EventReader().chunk({"prompt_progress": {"total": "x"}}) == [PromptProgress(0, 0, 0, 0)]


# ---- the beat (`respond._awake`): an engine made to wait by the test, not by a clock ----------


def test_beats_while_the_engine_is_silent_then_tokens_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=0.0, every=0.0))
    closed: list[bool] = []

    async def run() -> list[bytes]:
        go = asyncio.Event()

        async def engine() -> AsyncIterator[bytes]:
            await go.wait()  # silent until the test says so
            yield ROLE
            yield TOKEN

        async def close() -> None:
            closed.append(True)

        flow = respond.Flow(engine(), lambda chunks: chunks, close)
        out = []
        async for frame in respond._awake(flow, respond.OPENAI_BEATS):
            out.append(frame)
            if len(out) == 3:
                go.set()
        return out

    out = asyncio.run(run())
    assert out[:3] == [respond.SSE_KEEP_ALIVE] * 3
    assert out[-2:] == [ROLE, TOKEN] and set(out[:-2]) == {respond.SSE_KEEP_ALIVE}
    assert closed == [True]


def test_a_flow_never_started_is_released() -> None:
    """A client gone before the writer's first step: the answer is released all the same."""
    closed: list[bool] = []

    async def run() -> None:
        async def engine() -> AsyncIterator[bytes]:
            yield TOKEN

        async def close() -> None:
            closed.append(True)

        stream = respond._awake(respond.Flow(engine(), lambda c: c, close), respond.OPENAI_BEATS)
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # its first step began: the writer's step is only scheduled
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()

    asyncio.run(run())
    assert closed == [True]


def test_a_step_in_flight_when_tokens_begin_is_seen_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first token reached the writer but made no output yet (a translating face writes
    nothing for the role chunk): the beat waits for that step rather than read the writer
    twice at once."""
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=0.0, every=0.0))

    async def run() -> list[bytes]:
        go = asyncio.Event()

        async def engine() -> AsyncIterator[bytes]:
            yield ROLE
            await go.wait()
            yield TOKEN

        async def writer(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            async for chunk in chunks:
                if chunk is TOKEN:
                    yield b"token"

        async def close() -> None:
            pass

        out = []
        async for frame in respond._awake(
            respond.Flow(engine(), writer, close), respond.OPENAI_BEATS
        ):
            out.append(frame)
            go.set()
        return out

    assert asyncio.run(run())[-1] == b"token"
