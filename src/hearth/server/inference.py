"""OpenAI's inference routes: chat completions, completions, embeddings.

Each route loads the model on demand and streams the engine's answer back untouched (see
`engines/proxy.py`). Besides OpenAI's fields a body may carry `keep_alive` (seconds or "5m";
0 unloads right after, -1 never), which Hearth uses and does not forward.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hearth.engines.events import engine_refusal
from hearth.errors import InvalidRequest
from hearth.keepalive import keep_alive_param
from hearth.server import jsonbody
from hearth.server.respond import CLIENT_CLOSED, unless_disconnected
from hearth.server.schemas import ERRORS
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["inference"])
T = TypeVar("T")

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
    body = jsonbody.loads(raw)
    if not isinstance(body, dict):
        raise InvalidRequest('The request body must be a JSON object like {"model": "..."}.')
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            'Name the model to use: add "model": "<id>" (GET /v1/models lists the ids).',
            param="model",
        )
    keep_alive = body.pop("keep_alive", None)
    return body, None if keep_alive is None else keep_alive_param(keep_alive)


async def proxy(request: Request, path: str) -> Response:
    body, keep_alive = parse_body(await request.body())
    services: Services = request.app.state.services
    opening = services.open_inference(path, body, keep_alive)
    ok, upstream = await unless_disconnected(request, opening)
    if not ok or upstream is None:
        return Response(status_code=CLIENT_CLOSED)
    if upstream.status_code >= 400 and not upstream.errors_in_openai_shape:  # else: with a fix
        raise engine_refusal(upstream.status_code, await upstream.read(), str(body["model"]))
    if upstream.is_event_stream:
        return StreamingResponse(
            upstream.stream(),
            status_code=upstream.status_code,
            media_type=upstream.content_type,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    ok, content = await unless_disconnected(request, upstream.read())
    if not ok or content is None:
        return Response(status_code=CLIENT_CLOSED)
    return Response(content, status_code=upstream.status_code, media_type=upstream.content_type)


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
