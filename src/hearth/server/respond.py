"""The request ceremony every face shares: open the answer while watching the client, turn an
engine's refusal into a Hearth error (written in the caller's dialect by `server/errors.py`),
then stream the face's bytes or read the answer whole.

A face is a request translator plus an event writer; everything else about answering a request
is here, written once, so a feature that touches every face (keep-alives, progress) has one
place to go. The helpers the writers share are here too: `sse` frames an event the way
Anthropic and the Responses API name it, and a non-streamed answer is read with `read_whole`
and folded into the same typed events a stream makes (`whole_object`, `whole_answer`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from hearth.core.errors import EngineError
from hearth.engines.events import AnswerEvent, EventReader, Gathered, engine_refusal
from hearth.engines.proxy import Answer
from hearth.services import Services

T = TypeVar("T")
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
