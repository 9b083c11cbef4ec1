"""The request ceremony every face shares: open the answer while watching the client, turn an
engine's refusal into a Hearth error (written in the caller's dialect by `server/errors.py`),
then stream the face's bytes or read the answer whole.

A face is a request translator plus an event writer; everything else about answering a request
is here, written once, so a feature that touches every face (keep-alives, progress) has one
place to go. The helpers the writers share are here too: `sse` frames an event the way
Anthropic and the Responses API name it, and a non-streamed answer is read with `read_whole`
and folded into the same typed events a stream makes (`whole_object`, `whole_answer`).

Keep-alives (`stream_answer`): a streamed request is never silent for long, whatever it waits
for (a replica's slot in the scheduler's queue, a model loading, the engine reading a long
prompt). Agents give up on a silent stream (Claude Code after 300 s, and it then retries the
whole request without streaming); so when the answer is not open after `PACE.first` seconds
the stream is committed (200 and its headers) and the face's keep-alive frame (`Beats`) goes
out every `PACE.every` seconds until the engine's first token. A refusal that comes after that
is the dialect's in-stream error event (a whole answer that comes instead of a stream is
written in it as it is). An answer that opens in time is streamed as before, and its refusals
keep their status codes. On the /v1 pass-through the timer runs only until the first token:
after it, tokens flow and each chunk passes with no timer at all (the hot path,
bench/bench_proxy.py). A translating face keeps it all along (`Flow.beat_on`): it writes
nothing for some of the engine's events (reasoning that Anthropic's and the Responses face do
not show, a tool call Ollama writes whole), and a model thinking on a CPU can take minutes.

Whatever opened is released however the response ends: by the stream itself, or, when its
client left before it began (Starlette then never starts it), after the response
(`_Release`, `_ReleasedStream`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from hearth.core.errors import EngineError, HearthError
from hearth.engines.events import (
    AnswerEvent,
    EventReader,
    Gathered,
    engine_refusal,
    prompt_progress,
)
from hearth.engines.proxy import Answer
from hearth.services import Services

T = TypeVar("T")
log = logging.getLogger("hearth.server")
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, but logs do
EVENT_STREAM = "text/event-stream"
#: What every stream says to caches and proxies in between: nothing to keep, nothing to buffer.
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# One encoder, made once: `json.dumps` with any option builds a new JSONEncoder per call, a
# cost paid per token on a stream (the output is the same bytes).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def services_of(request: Request) -> Services:
    """The app's service layer (set once by `server/app.py`; typed here for every route)."""
    services: Services = request.app.state.services
    return services


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, step: Awaitable[T]) -> tuple[bool, T | None]:
    """Await `step`, cancelling it if the client hangs up first (so the engine stops too).

    Starlette cancels a streaming body when its client leaves, but not a plain handler: a
    non-streamed generation would otherwise run to its end for nobody.
    """
    task = asyncio.ensure_future(step)
    watch = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # let it clean up (closes upstream)
    return False, None


async def open_answer(
    request: Request, opening: Awaitable[Answer], model: str, *, pass_errors: bool = False
) -> Answer | None:
    """The answer `opening` gives, or None when the client left first. An engine's refusal is
    raised as a Hearth error; with `pass_errors` (OpenAI's own face) an answer whose errors are
    already in OpenAI's shape is returned as it is, to be passed through. A face that translates
    takes only a 200: anything else (a remote's redirect included) has no answer in it."""
    ok, answer = await unless_disconnected(request, opening)
    if not ok or answer is None:
        return None
    return await checked(answer, model, pass_errors=pass_errors)


async def checked(answer: Answer, model: str, *, pass_errors: bool = False) -> Answer:
    """`answer` if a face may stream or pass it; an engine's refusal raised (see open_answer)."""
    status = answer.status_code
    passed = pass_errors and (status < 400 or answer.errors_in_openai_shape)
    if not passed and status != 200:
        raise engine_refusal(status, await answer.read(), model)
    return answer


def client_closed() -> Response:
    """What a handler returns when its client left: nobody reads it, the access log does."""
    return Response(status_code=CLIENT_CLOSED)


def streaming(
    chunks: AsyncIterator[bytes], *, media_type: str = EVENT_STREAM, status_code: int = 200
) -> StreamingResponse:
    """A face's bytes, streamed as they are written."""
    return StreamingResponse(
        chunks, status_code=status_code, media_type=media_type, headers=STREAM_HEADERS
    )


async def read_whole(request: Request, answer: Answer) -> bytes | None:
    """The answer's body read whole, or None when the client left first (the read is
    cancelled, which stops the engine)."""
    ok, content = await unless_disconnected(request, answer.read())
    return content if ok else None


def whole_object(content: bytes) -> dict[str, Any]:
    """An engine's non-streamed answer as its JSON object; anything else is the engine's
    failure (502), never a 500."""
    try:
        parsed = json.loads(content)
    except ValueError as bad:
        raise EngineError(f"The engine answered with something other than JSON: {bad}") from bad
    if not isinstance(parsed, dict):
        raise EngineError("The engine answered with JSON that is not an object.")
    return parsed


def gather(events: Iterable[AnswerEvent], choice: int = 0) -> Gathered:
    """One choice of an answer, folded from its events (a whole answer: `whole_answer`)."""
    gathered = Gathered(choice)
    for event in events:
        gathered.add(event)
    return gathered


def whole_answer(reply: Mapping[str, Any], choice: int = 0) -> Gathered:
    """A non-streamed chat completion folded as a stream of it would be: the one reading of a
    whole answer behind every face."""
    return gather(EventReader().whole(reply), choice)


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as Anthropic and the Responses API write it: `event:` naming its type, then
    its data."""
    return f"event: {event['type']}\ndata: {_ENCODE(event)}\n\n".encode()


# ---- keep-alives ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pace:
    """When a waiting stream speaks: its first keep-alive after `first` seconds (the stream is
    committed then), the next ones `every` seconds after the last frame, until the first token.
    Well under any client's idle limit (Claude Code: 300 s; proxies often 60 s)."""

    first: float = 5.0
    every: float = 10.0


#: The pace of every stream (tests lower it; it is not a setting: no client needs another).
PACE = Pace()
#: An SSE comment: every SSE client skips it (the spec's keep-alive), the `openai` SDKs included.
SSE_KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class Beats:
    """A dialect's frames for a stream that waits: the keep-alive, and the in-stream error
    event that takes the place of an error status once the stream is committed."""

    alive: Callable[[], bytes]
    failed: Callable[[HearthError], bytes]
    media_type: str = EVENT_STREAM


def openai_failed(error: HearthError) -> bytes:
    """OpenAI's in-stream error (`data: {"error": {...}}`), which the `openai` SDKs raise."""
    return b"data: " + _ENCODE(error.to_openai()).encode("utf-8", "replace") + b"\n\n"


#: OpenAI's streams (/v1/chat/completions, /v1/completions, the page's thread runs).
OPENAI_BEATS = Beats(lambda: SSE_KEEP_ALIVE, openai_failed)
Writer = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Flow:
    """An opened answer, ready to stream: the engine's bytes, the face's writer of them, and
    what releases the answer (run even when the writer never started: a client gone at once).
    `beat_on`: keep-alives whenever the writer is silent for `PACE.every`, after the first
    token too (a translating face: it writes nothing for some events); off, the beat stops at
    the first token and the chunks pass with no timer (the bytes as they are: every event
    shows)."""

    chunks: AsyncIterator[bytes]
    write: Writer
    close: Callable[[], Awaitable[None]]
    progress: bool = True  # turn the engine's prompt progress into comments (see _Watch)
    beat_on: bool = False


#: What a face makes of what its opening gave: a Flow, or a whole Response (an error answer
#: passed through as it is); a refusal is raised.
Accept = Callable[[T], Awaitable[Flow | Response]]


def answer_flow(
    model: str,
    write: Writer,
    *,
    pass_errors: bool = False,
    progress: bool = True,
    beat_on: bool = True,
) -> Accept[Answer]:
    """The `Accept` of a face that streams an engine's answer (`checked` says what passes;
    `progress`, `beat_on`: see `Flow`; a translating face keeps the beat, the pass-through
    does not)."""

    async def accept(answer: Answer) -> Flow | Response:
        answer = await checked(answer, model, pass_errors=pass_errors)
        if not answer.is_event_stream:  # an error in OpenAI's shape, passed through
            content = await answer.read()
            return Response(content, answer.status_code, media_type=answer.content_type)
        return Flow(answer.stream(), write, answer.close, progress=progress, beat_on=beat_on)

    return accept


async def stream_answer(
    request: Request,
    opening: Awaitable[T],
    accept: Accept[T],
    beats: Beats,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A streamed request's response, kept alive while it waits (see the module docstring).
    `headers` go with the stream however it begins (a refusal in time has its own)."""
    task = asyncio.ensure_future(opening)
    watch = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait((task, watch), timeout=PACE.first, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself cancelled (shutdown): the opening goes too
        task.cancel()
        raise
    finally:
        watch.cancel()
    if watch.done() and not watch.cancelled():  # the client left (as it opened, maybe): so
        await _settle(task, accept, taken=False)  # does the engine, or what opened is released
        return client_closed()
    if task.done():  # in time: as a stream always was, refusals with their status
        opened = await accept(task.result())
        if isinstance(opened, Response):
            return opened
        release = _Release(opened.close)
        body = _awake(replace(opened, close=release), beats)
    else:
        release = _Release(lambda: _settle(task, accept, taken=False))
        body = _committed(task, accept, beats, release)
    release.body = body
    response = _ReleasedStream(body, release, beats.media_type)
    response.headers.update(headers or {})
    return response


class _Release:
    """What releases a stream's answer, run once, by whoever comes first: the stream's own end
    (its generator's `finally`), or the response's own end (`_ReleasedStream`), however it
    ended. That one covers a stream that never began (Starlette cancels its body before the
    first step when the client has already left: a generator never started runs no `finally`)
    and one left waiting at a `yield` (closed there rather than at its collection)."""

    __slots__ = ("action", "body", "done")

    def __init__(self, action: Callable[[], Awaitable[None]]) -> None:
        self.action = action
        self.body: AsyncGenerator[bytes, None] | None = None
        self.done = False

    async def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        with anyio.CancelScope(shield=True):
            await self.action()

    async def after(self) -> None:
        """After the response: the stream closed, then released if it never began (a stream
        that began releases what it holds itself)."""
        with anyio.CancelScope(shield=True):
            if self.body is not None:
                await self.body.aclose()
            await self()


class _ReleasedStream(StreamingResponse):
    """A stream whose answer is released when its response ends, whatever ended it: rather
    than Starlette's background task, which it skips when the response raised (a client gone
    in ASGI 2.4's way, `ClientDisconnect`) or was cancelled from outside."""

    def __init__(
        self, body: AsyncGenerator[bytes, None], release: _Release, media_type: str
    ) -> None:
        super().__init__(body, media_type=media_type, headers=STREAM_HEADERS)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.release.after()


async def _committed(
    task: asyncio.Future[T], accept: Accept[T], beats: Beats, release: _Release
) -> AsyncGenerator[bytes, None]:
    """A committed stream: keep-alives until the answer opens, then its bytes; a refusal (or a
    failure) is the dialect's in-stream error, a whole answer (a success status) its body."""
    release.done = True  # begun: its `finally` releases what it holds, not `release`
    taken = False  # whether `accept` has had the answer (it releases what it refuses)
    flowing: AsyncGenerator[bytes, None] | None = None  # its stream, once it opened
    try:
        yield beats.alive()
        while not task.done():
            await asyncio.wait((task,), timeout=PACE.every)
            if not task.done():
                yield beats.alive()
        taken = True
        try:
            opened = await accept(task.result())
        except HearthError as error:
            yield beats.failed(error)
            return
        except Exception:  # the backstop's 500, written in the stream
            log.exception("a streamed request failed after its stream began")
            yield beats.failed(HearthError("Hearth failed to open the answer (see its log)."))
            return
        if isinstance(opened, Response):
            yield _passed(opened, beats)
            return
        flowing = _awake(opened, beats)
        async for chunk in flowing:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            if flowing is not None:  # closed at a `yield`: its stream closes (and releases) now
                await flowing.aclose()
            await _settle(task, accept, taken=taken)


async def _settle(task: asyncio.Future[T], accept: Accept[T], *, taken: bool) -> None:
    """What a committed stream leaves behind when it ends early: the waiting request cancelled,
    or an answer that opened as the client left released (through its Flow's close)."""
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    if taken or task.cancelled() or task.exception() is not None:
        return
    try:
        opened = await accept(task.result())
    except Exception:  # a refusal nobody reads: accept has released it
        return
    if isinstance(opened, Flow):
        await opened.close()


def _passed(response: Response, beats: Beats) -> bytes:
    """What a committed stream writes for a whole response that came instead of a stream: an
    error status as the dialect's error event; a success (an upstream that answered a stream
    request whole) as its body, a line of its own in a stream of lines."""
    if response.status_code >= 400:
        return beats.failed(_passed_error(response))
    body = bytes(response.body)
    if beats.media_type != EVENT_STREAM and not body.endswith(b"\n"):
        body += b"\n"
    return body


def _passed_error(response: Response) -> HearthError:
    """An upstream's error answer, for a stream that can no longer carry its status."""
    try:
        error = json.loads(bytes(response.body)).get("error") or {}
        message = str(error.get("message") or "").strip()
    except (ValueError, AttributeError):
        message = ""
    failure = EngineError(message or f"The engine answered {response.status_code}.")
    failure.status = response.status_code
    return failure


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next chunk, or None at the end (a task's result, not its StopAsyncIteration)."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _awake(flow: Flow, beats: Beats) -> AsyncGenerator[bytes, None]:
    """The face's bytes; while the engine has sent no token yet (all along with
    `flow.beat_on`), a keep-alive whenever nothing went out for `PACE.every` seconds. Without
    `beat_on`, only until the first token: then, no timer per chunk."""
    watch = _Watch(flow.progress)
    output = flow.write(watch.chunks(flow.chunks))
    step: asyncio.Future[bytes | None] | None = None
    beat_on = flow.beat_on
    try:
        while step is not None or beat_on or not watch.flowing:  # a step is seen to its end
            if step is None:  # one step of the writer, raced with the clock
                step = asyncio.ensure_future(_next(output))
            beat = PACE.every if beat_on or not watch.flowing else None  # no more beats
            done, _ = await asyncio.wait((step,), timeout=beat)
            if not done:
                yield beats.alive()
                continue
            chunk, step = step.result(), None
            if chunk is None:
                return
            yield chunk
        async for chunk in output:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):  # the client may be gone: release anyway
            if step is not None:
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
            closing = getattr(output, "aclose", None)
            if closing is not None:
                await closing()  # the writer's own cleanup, now rather than at collection
            await flow.close()


class _Watch:
    """The engine's bytes, watched for the answer's first generated token (llama.cpp sends
    nothing but SSE comments while it reads a prompt, or, asked with `return_progress`, its
    `prompt_progress` chunks; then the role and the first token). With `progress`, those
    chunks become SSE comments (`: prompt 1234/19500`): OpenAI's streams pass them on as
    keep-alives that say how far the read is (the page shows it), the translating faces'
    readers skip them like any comment."""

    __slots__ = ("flowing", "progress")

    def __init__(self, progress: bool) -> None:
        self.flowing = False
        self.progress = progress

    async def chunks(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        held = b""
        async for raw in source:
            out, held = self._waiting(held + raw)
            if out:
                yield out
            if self.flowing:
                break
        else:
            if held:
                yield held
            return
        async for raw in source:
            yield raw

    def _waiting(self, buffer: bytes) -> tuple[bytes, bytes]:
        """(what goes out now, what waits for the rest of its event); `flowing` turns true
        at the first data event that is not progress (it and all after it go out as they
        are). Only whole events are read: llama.cpp ends each with a blank line."""
        if not self.progress or b"\r" in buffer:  # nothing to rewrite: bytes as they come
            self.flowing = b"data:" in buffer and b'"prompt_progress"' not in buffer
            return buffer, b""
        end = buffer.rfind(b"\n\n")
        if end < 0:
            return b"", buffer
        out: list[bytes] = []
        events = buffer[: end + 2].split(b"\n\n")[:-1]
        for at, event in enumerate(events):
            if event.startswith(b"data:") and b'"prompt_progress"' in event:
                out.append(_progress_comment(event))
            elif event.startswith(b"data:"):
                self.flowing = True
                return b"".join(out) + b"\n\n".join(events[at:]) + buffer[end:], b""
            else:
                out.append(event + b"\n\n")
        return b"".join(out), buffer[end + 2 :]


def _progress_comment(event: bytes) -> bytes:
    """A `prompt_progress` chunk as an SSE comment: `: prompt <processed>/<total>`."""
    try:
        chunk = json.loads(event[5:])
    except ValueError:
        chunk = None
    progress = prompt_progress(chunk) if isinstance(chunk, dict) else None
    if progress is None:
        return SSE_KEEP_ALIVE
    return f": prompt {progress.processed}/{progress.total}\n\n".encode()
