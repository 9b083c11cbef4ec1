"""The request ceremony every face shares: open the answer while watching the client, turn an
engine's refusal into a Hearth error (written in the caller's dialect by `server/errors.py`),
then stream the face's bytes or read the answer whole.

A face is a request translator plus an event writer; everything else about answering a request
is here, written once, so a feature that touches every face (keep-alives, progress) has one
place to go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from hearth.engines.events import engine_refusal
from hearth.engines.proxy import Answer

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, but logs do
EVENT_STREAM = "text/event-stream"
#: What every stream says to caches and proxies in between: nothing to keep, nothing to buffer.
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


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
    already in OpenAI's shape is returned as it is, to be passed through."""
    ok, answer = await unless_disconnected(request, opening)
    if not ok or answer is None:
        return None
    if answer.status_code >= 400 and not (pass_errors and answer.errors_in_openai_shape):
        raise engine_refusal(answer.status_code, await answer.read(), model)
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
