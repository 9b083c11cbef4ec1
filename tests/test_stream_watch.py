"""The watch of an engine's bytes until the first token (`respond._Watch`), a pure function of
the bytes: where the answer begins, what the engine's prompt progress becomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
from fastapi import Request, Response
from starlette.requests import ClientDisconnect

from hearth.engines.events import EventReader, PromptProgress, engine_chunks
from hearth.engines.proxy import Answer
from hearth.server import respond
from hearth.server.anthropic import routes as anthropic_routes
from hearth.server.anthropic import stream as anthropic_stream
from hearth.server.anthropic.stream import Assembler
from hearth.server.ollama.stream import beats as ollama_beats
from hearth.server.ollama.translate import Reply
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


REASONING = b'data: {"choices":[{"delta":{"reasoning_content":"Hmm"}}]}\n\n'


async def _quiet(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A translating face's writer as the beat sees it: nothing for the role and reasoning."""
    async for chunk in chunks:
        if chunk is TOKEN:
            yield b"token"


def _anthropic(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    return anthropic_routes._sse(chunks, Assembler("m"))


@pytest.mark.parametrize("write", [_quiet, _anthropic], ids=["writer", "anthropic"])
def test_a_translating_face_beats_while_the_model_thinks(
    monkeypatch: pytest.MonkeyPatch, write: respond.Writer
) -> None:
    """The engine's first events are reasoning, which Anthropic's and the Responses face do
    not show: tokens flow, yet nothing goes out, so the beat goes on (`Flow.beat_on`)."""
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=0.0, every=0.0))
    beat = anthropic_stream.BEATS.alive() if write is _anthropic else respond.SSE_KEEP_ALIVE

    async def run() -> list[bytes]:
        go, thought = asyncio.Event(), asyncio.Event()

        async def engine() -> AsyncIterator[bytes]:
            yield ROLE
            yield REASONING
            thought.set()
            await go.wait()  # thinking on, silently
            yield TOKEN

        async def close() -> None:
            pass

        flow = respond.Flow(engine(), write, close, beat_on=True)
        out, beats = [], 0
        async for frame in respond._awake(flow, respond.Beats(lambda: beat, respond.openai_failed)):
            out.append(frame)
            if thought.is_set() and frame == beat:
                beats += 1
                if beats == 3:
                    go.set()
        return out

    out = asyncio.run(asyncio.wait_for(run(), timeout=10))
    assert out.count(beat) >= 3
    assert b"token" in out[-1] or b"Hi" in b"".join(out[-4:])


def test_the_pass_through_stops_beating_at_the_first_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/v1's bytes pass as they are (reasoning too): no timer once the answer flows."""
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=0.0, every=0.0))
    waits: list[float | None] = []
    real_wait = asyncio.wait

    async def counted(fs: object, *, timeout: float | None = None, **kw: object) -> object:
        waits.append(timeout)
        return await real_wait(fs, timeout=timeout, **kw)  # type: ignore[arg-type]

    async def run() -> list[bytes]:
        async def engine() -> AsyncIterator[bytes]:
            for chunk in (ROLE, REASONING, TOKEN, TOKEN, TOKEN):
                yield chunk

        async def close() -> None:
            pass

        flow = respond.Flow(engine(), lambda chunks: chunks, close)
        return [frame async for frame in respond._awake(flow, respond.OPENAI_BEATS)]

    monkeypatch.setattr(asyncio, "wait", counted)  # respond's too: the one module
    assert asyncio.run(run()) == [ROLE, REASONING, TOKEN, TOKEN, TOKEN]
    assert len(waits) <= 1  # at most the first step raced the clock


class _FakeAnswer:
    """An engine's answer as `answer_flow` reads it."""

    status_code = 200
    is_event_stream = True
    errors_in_openai_shape = False
    content_type = "text/event-stream"

    def __init__(self) -> None:
        self.closed = 0

    async def stream(self) -> AsyncIterator[bytes]:
        yield TOKEN

    async def close(self) -> None:
        self.closed += 1


def _fake_answer() -> Answer:
    return cast(Answer, _FakeAnswer())


def test_faces_keep_the_beat_and_the_pass_through_does_not() -> None:
    async def flows() -> tuple[respond.Flow | Response, respond.Flow | Response]:
        face = respond.answer_flow("m", _quiet)
        through = respond.answer_flow("m", lambda c: c, pass_errors=True, beat_on=False)
        return await face(_fake_answer()), await through(_fake_answer())

    face, through = asyncio.run(flows())
    assert isinstance(face, respond.Flow) and face.beat_on
    assert isinstance(through, respond.Flow) and not through.beat_on


# ---- a committed stream (`respond._committed`): what the opening gave, written in it --------


def _committed(opened: object, beats: respond.Beats) -> list[bytes]:
    async def run() -> list[bytes]:
        task: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        task.set_result(opened)

        async def accept(value: object) -> respond.Flow | Response:
            assert isinstance(value, Response)
            return value

        release = respond._Release(lambda: asyncio.sleep(0))
        return [frame async for frame in respond._committed(task, accept, beats, release)]

    return asyncio.run(run())


def test_a_whole_answer_after_commit_is_written_as_it_is() -> None:
    """An upstream that answered a stream request whole (Ollama's `_accept` makes its one
    object; /v1 passes a remote's JSON): after commit its body goes out, not an error."""
    whole = Response(b'{"done":true}', 200, media_type="application/json")
    assert _committed(whole, ollama_beats(Reply("m", chat=True)))[1:] == [b'{"done":true}\n']
    assert _committed(whole, respond.OPENAI_BEATS)[1:] == [b'{"done":true}']


def test_an_error_answer_after_commit_is_the_dialects_error() -> None:
    error = Response(b'{"error":{"message":"no such model"}}', 404)
    sent = _committed(error, respond.OPENAI_BEATS)
    assert sent[0] == respond.SSE_KEEP_ALIVE
    assert sent[1].startswith(b"data: ") and b"no such model" in sent[1]


# ---- release: a client gone as the stream starts ----------------------------------------------


class _Client:
    """A request's `receive`: the client stays (`gone` false) or has left."""

    def __init__(self, *, gone: bool) -> None:
        self.gone = gone

    async def receive(self) -> dict[str, str]:
        if not self.gone:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}


def _request(*, gone: bool) -> Request:
    return cast(Request, _Client(gone=gone))


def _opened(log: list[str]) -> respond.Accept[str]:
    async def engine() -> AsyncIterator[bytes]:
        yield TOKEN

    async def close() -> None:
        log.append("closed")

    async def accept(value: str) -> respond.Flow | Response:
        return respond.Flow(engine(), lambda chunks: chunks, close)

    return accept


async def _answer() -> str:
    return "answer"


def _scope(version: str) -> dict[str, object]:
    return {"type": "http", "asgi": {"spec_version": version}}


async def _send(message: object) -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize("first", [3600.0, 0.0], ids=["in-time", "committed"])
def test_a_stream_never_begun_is_released(monkeypatch: pytest.MonkeyPatch, first: float) -> None:
    """The client left as the stream starts: Starlette (ASGI 2.3, uvicorn's) sees the
    disconnect and cancels the body before its first step, so the generator never runs and
    its `finally` cannot release; the response's end does (an open answer closed, a waiting
    opening cancelled), once."""
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=first, every=3600.0))
    log: list[str] = []

    async def run() -> None:
        async def opening() -> str:
            if first == 0.0:  # not open in time: the stream is committed
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    log.append("cancelled")
                    raise
            return "answer"

        request = _request(gone=False)
        response = await respond.stream_answer(
            request, opening(), _opened(log), respond.OPENAI_BEATS
        )
        assert response.status_code == 200
        await response(_scope("2.3"), _Client(gone=True).receive, _send)
        assert log == (["closed"] if first else ["cancelled"])  # now, not at the loop's end
        assert isinstance(response, respond._ReleasedStream)
        await response.release.after()  # once only

    asyncio.run(run())
    assert log == (["closed"] if first else ["cancelled"])


def test_a_stream_whose_client_is_gone_in_asgi_2_4_is_released() -> None:
    """ASGI 2.4: the send fails (OSError), Starlette raises ClientDisconnect and skips its
    background task; the answer is released all the same."""
    log: list[str] = []

    async def run() -> None:
        response = await respond.stream_answer(
            _request(gone=False), _answer(), _opened(log), respond.OPENAI_BEATS
        )

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body":
                raise OSError("gone")

        with pytest.raises(ClientDisconnect):
            await response(_scope("2.4"), _Client(gone=False).receive, send)  # type: ignore[arg-type]
        assert log == ["closed"]  # now, not when the loop closes what it left

    asyncio.run(run())
    assert log == ["closed"]


def test_a_whole_stream_is_released_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(respond, "PACE", respond.Pace(first=0.0, every=3600.0))
    log: list[str] = []
    sent: list[bytes] = []

    async def run() -> None:
        async def opening() -> str:
            await asyncio.sleep(0.01)
            return "answer"

        response = await respond.stream_answer(
            _request(gone=False), opening(), _opened(log), respond.OPENAI_BEATS
        )

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body":
                sent.append(cast(bytes, message["body"]))

        await response(_scope("2.3"), _Client(gone=False).receive, send)  # type: ignore[arg-type]
        assert log == ["closed"]  # now, not when the loop closes what it left

    asyncio.run(run())
    assert log == ["closed"]
    assert b"".join(sent) == respond.SSE_KEEP_ALIVE + TOKEN


def test_a_client_gone_as_the_answer_opened_is_told_and_released() -> None:
    """The answer opened and the client left in the same moment: no stream, the answer
    released (`client_closed`)."""
    log: list[str] = []

    async def run() -> Response:
        return await respond.stream_answer(
            _request(gone=True), _answer(), _opened(log), respond.OPENAI_BEATS
        )

    assert asyncio.run(run()).status_code == respond.CLIENT_CLOSED
    assert log == ["closed"]
