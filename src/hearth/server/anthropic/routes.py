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

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.engines.events import engine_refusal
from hearth.engines.proxy import Answer as Upstream
from hearth.errors import EngineError, HearthError, InvalidRequest
from hearth.server import jsonbody
from hearth.server.anthropic.stream import SSE, events, sse
from hearth.server.anthropic.translate import Assembler, Call, count_body, messages_call
from hearth.server.respond import CLIENT_CLOSED, unless_disconnected
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


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body, parsed with the limits of every route (`jsonbody`)."""
    body = jsonbody.loads(await request.body())
    if not isinstance(body, dict):
        raise InvalidRequest('The request body must be a JSON object like {"model": "..."}.')
    return body


async def _open(request: Request, call: Call, body: dict[str, Any]) -> Upstream | None:
    """The engine's answer (200 only: a refusal is raised as a Hearth error); None when the
    client left first."""
    services: Services = request.app.state.services
    opening = services.open_inference("chat/completions", body, call.keep_alive)
    ok, upstream = await unless_disconnected(request, opening)
    if not ok or upstream is None:
        return None
    if upstream.status_code != 200:
        raise engine_refusal(upstream.status_code, await upstream.read(), str(body["model"]))
    return upstream


async def _sse(upstream: Upstream, reply: Assembler) -> AsyncIterator[bytes]:
    try:
        async for event in events(upstream.stream(), reply):
            yield sse(event)
    finally:
        await upstream.close()  # a stop sequence ends early: this cancels the generation


async def _whole(upstream: Upstream, reply: Assembler) -> dict[str, Any]:
    try:
        async for event in events(upstream.stream(), reply):
            if event["type"] == "error":
                raise EngineError(str(event["error"]["message"]))
    finally:
        await upstream.close()
    return reply.message()


@router.post("/messages", openapi_extra=_DOC)
async def messages(request: Request) -> Response:
    """Anthropic's Messages: `max_tokens` required; streamed (SSE with `event:` lines) with
    "stream": true. Text, base64 images, tool_use/tool_result, system, stop_sequences."""
    call = messages_call(await _body(request))
    upstream = await _open(request, call, call.body)
    if upstream is None:
        return Response(status_code=CLIENT_CLOSED)
    reply = Assembler(call.name, call.stops)
    if call.stream:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(_sse(upstream, reply), media_type=SSE, headers=headers)
    ok, message = await unless_disconnected(request, _whole(upstream, reply))
    if not ok or message is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(message)


@router.post("/messages/count_tokens", openapi_extra=_DOC)
async def count_tokens(request: Request) -> Response:
    """The input tokens a Messages request would use: exact, counted by the engine on the same
    prompt (chat template and tools included) with one token generated. It loads the model;
    the prompt stays in the engine's cache for the request that follows."""
    body = await _body(request)
    body.setdefault("max_tokens", 1)  # count_tokens does not take max_tokens
    call = messages_call(body)
    upstream = await _open(request, call, count_body(call))
    if upstream is None:
        return Response(status_code=CLIENT_CLOSED)
    ok, content = await unless_disconnected(request, upstream.read())
    if not ok or content is None:
        return Response(status_code=CLIENT_CLOSED)
    usage = json.loads(content).get("usage") or {}
    tokens = usage.get("prompt_tokens")
    if not isinstance(tokens, int):
        raise HearthError("The engine did not report the prompt's token count.")
    return JSONResponse({"input_tokens": tokens})
