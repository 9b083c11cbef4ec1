"""Anthropic's Messages routes: POST /v1/messages and POST /v1/messages/count_tokens.

A translation at the face (`translate.py`): the Messages body becomes a chat-completions body
sent through `Services.open_inference`, the same call /v1/chat/completions makes, so loading on
demand, keep_alive, replicas and the engine's checks apply once for every dialect. The engine
is always asked to stream; a non-streamed request is assembled from the same events.

`anthropic-version` and `anthropic-beta` headers are accepted and ignored: this is one API
version, and the betas are features of Anthropic's service. The key is Hearth's, sent as
`x-api-key` (the security guard accepts it as it accepts `Authorization: Bearer`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearth.core.errors import EngineError, HearthError
from hearth.engines.events import answer_events
from hearth.engines.proxy import Answer
from hearth.server import jsonbody
from hearth.server.anthropic.shapes import Message
from hearth.server.anthropic.stream import BEATS, Assembler, events
from hearth.server.anthropic.translate import Call, count_body, messages_call
from hearth.server.respond import (
    answer_flow,
    client_closed,
    open_answer,
    read_whole,
    sse,
    stream_answer,
    unless_disconnected,
    whole_answer,
    whole_object,
)
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["anthropic"])

_EXAMPLE = {
    "model": "smollm2-135m-instruct",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Say hello in French."}],
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "example": _EXAMPLE}}},
    }
}


async def _open(request: Request, call: Call, body: dict[str, Any]) -> Answer | None:
    """The engine's answer (a refusal is raised as a Hearth error); None when the client left
    first."""
    services: Services = request.app.state.services
    opening = services.open_inference("chat/completions", body, call.keep_alive)
    return await open_answer(request, opening, str(body["model"]))


async def _sse(chunks: AsyncIterator[bytes], reply: Assembler) -> AsyncIterator[bytes]:
    """The stream's events; the ceremony closes the answer when they end (a stop sequence
    ends them early: closing cancels the generation)."""
    async for event in events(chunks, reply):
        yield sse(event)


async def _whole(answer: Answer, reply: Assembler) -> Message:
    try:
        async for event in answer_events(answer.stream()):
            reply.add(event)
            if reply.failure is not None:
                raise EngineError(reply.failure.message)
            if reply.settled:
                break
    finally:
        await answer.close()
    reply.finish_events()
    return reply.message()


@router.post("/messages", openapi_extra=_DOC)
async def messages(request: Request) -> Response:
    """Anthropic's Messages: `max_tokens` required; streamed (SSE with `event:` lines) with
    "stream": true. Text, base64 images, tool_use/tool_result, system, stop_sequences."""
    call = messages_call(jsonbody.loads_object(await request.body()))
    reply = Assembler(call.name, call.stops)
    if call.stream:  # kept alive while it waits (server/respond.py): `ping` events
        services: Services = request.app.state.services
        opening = services.open_inference("chat/completions", call.body, call.keep_alive)
        accept = answer_flow(str(call.body["model"]), lambda chunks: _sse(chunks, reply))
        return await stream_answer(request, opening, accept, BEATS)
    answer = await _open(request, call, call.body)
    if answer is None:
        return client_closed()
    ok, message = await unless_disconnected(request, _whole(answer, reply))
    if not ok or message is None:
        return client_closed()
    return JSONResponse(message)


@router.post("/messages/count_tokens", openapi_extra=_DOC)
async def count_tokens(request: Request) -> Response:
    """The input tokens a Messages request would use: exact, counted by the engine on the same
    prompt (chat template and tools included) with one token generated. It loads the model;
    the prompt stays in the engine's cache for the request that follows."""
    body = jsonbody.loads_object(await request.body())
    body.setdefault("max_tokens", 1)  # count_tokens does not take max_tokens
    call = messages_call(body)
    answer = await _open(request, call, count_body(call))
    if answer is None:
        return client_closed()
    content = await read_whole(request, answer)
    if content is None:
        return client_closed()
    usage = whole_answer(whole_object(content)).usage
    tokens = usage.prompt_tokens if usage is not None else None
    if tokens is None:
        raise HearthError("The engine did not report the prompt's token count.")
    return JSONResponse({"input_tokens": tokens})
