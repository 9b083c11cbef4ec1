"""OpenAI's inference routes: chat completions, completions, embeddings.

Each route loads the model on demand and streams the engine's answer back untouched (see
`engines/proxy.py`). Besides OpenAI's fields a body may carry `keep_alive` (seconds or "5m";
0 unloads right after, -1 never), which Hearth uses and does not forward.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from hearth.core.errors import InvalidRequest
from hearth.core.keepalive import keep_alive_param
from hearth.server import jsonbody
from hearth.server.respond import (
    OPENAI_BEATS,
    answer_flow,
    client_closed,
    open_answer,
    read_whole,
    stream_answer,
    streaming,
)
from hearth.server.schemas import ERRORS
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["inference"])

_EXAMPLES = {
    "chat/completions": {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Say hello in French."}],
        "stream": True,
    },
    "completions": {"model": "smollm2-135m-instruct", "prompt": "Once upon a time"},
    "embeddings": {"model": "my-embedding-model", "input": ["a cat", "a dog"]},
}


def _doc(path: str) -> dict[str, Any]:
    """OpenAPI for a route that reads its JSON body itself (to pass unknown fields on)."""
    schema = {"type": "object", "additionalProperties": True, "example": _EXAMPLES[path]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def parse_body(raw: bytes) -> tuple[dict[str, Any], float | None]:
    """The JSON body and its `keep_alive` (removed from the body).

    Parsed once, here, with the same limits as every other route (`jsonbody`: nesting depth,
    lone surrogates), so hostile JSON is a 400 before it reaches an engine.
    """
    body = jsonbody.loads_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            'Name the model to use: add "model": "<id>" (GET /v1/models lists the ids).',
            param="model",
        )
    keep_alive = body.pop("keep_alive", None)
    return body, None if keep_alive is None else keep_alive_param(keep_alive)


def _as_is(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    return chunks


async def proxy(request: Request, path: str) -> Response:
    """The engine's answer, passed through byte for byte (an OpenAI-compatible upstream's
    errors too: they are already in this face's shape)."""
    body, keep_alive = parse_body(await request.body())
    services: Services = request.app.state.services
    asked = "return_progress" in body  # the client's own: the engine's chunks as they are
    opening = services.open_inference(path, body, keep_alive)
    if body.get("stream") is True:  # kept alive while it waits (server/respond.py)
        accept = answer_flow(  # bytes as they are (reasoning too): no beat after the first token
            str(body["model"]), _as_is, pass_errors=True, progress=not asked, beat_on=False
        )
        return await stream_answer(request, opening, accept, OPENAI_BEATS)
    answer = await open_answer(request, opening, str(body["model"]), pass_errors=True)
    if answer is None:
        return client_closed()
    if answer.is_event_stream:
        return streaming(
            answer.stream(), media_type=answer.content_type, status_code=answer.status_code
        )
    content = await read_whole(request, answer)
    if content is None:
        return client_closed()
    return Response(content, status_code=answer.status_code, media_type=answer.content_type)


@router.post("/chat/completions", responses=ERRORS, openapi_extra=_doc("chat/completions"))
async def chat_completions(request: Request) -> Response:
    """OpenAI's chat completions (streamed with "stream": true); loads the model on demand."""
    return await proxy(request, "chat/completions")


@router.post("/completions", responses=ERRORS, openapi_extra=_doc("completions"))
async def completions(request: Request) -> Response:
    """OpenAI's legacy text completions; loads the model on demand."""
    return await proxy(request, "completions")


@router.post("/embeddings", responses=ERRORS, openapi_extra=_doc("embeddings"))
async def embeddings(request: Request) -> Response:
    """OpenAI's embeddings. The model needs engine_parameters `"embedding": true` (and a
    `pooling` such as "mean" for a chat model)."""
    return await proxy(request, "embeddings")
