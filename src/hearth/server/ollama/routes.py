"""Ollama's inference routes: /api/chat, /api/generate, /api/embed, /api/embeddings.

Each is a translation at the face (`translate.py`): the Ollama body becomes an OpenAI body,
which goes through the same service call as /v1 (`Services.open_inference`: load on demand,
keep_alive, engine selection) and the shared request ceremony (`server/respond.py`); the
engine's answer comes back as typed events (`engines/events`) that `translate.Reply` writes in
Ollama's shape (`stream.py` for NDJSON). Besides that, Hearth does three things itself, in the
service layer (`services/loading.py`):

- `num_ctx`: Ollama reloads a model with another context; so does Hearth, through a start with
  that `ctx_len` (`ensure_context`), bounded by the model's trained context;
- an empty `messages` / `prompt` loads the model (or with keep_alive 0 unloads it), as Ollama;
- `load_duration` is the time spent making sure the model is loaded before the request.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearth.core.errors import EngineError, InvalidParameter
from hearth.core.keepalive import keep_alive_param
from hearth.engines.events import EventReader
from hearth.engines.proxy import Answer
from hearth.models.store import ModelEntry
from hearth.server import jsonbody
from hearth.server.ollama import catalog
from hearth.server.ollama.stream import beats, ndjson
from hearth.server.ollama.translate import (
    Call,
    Reply,
    chat_call,
    embed_inputs,
    generate_call,
    json_bytes,
    model_name,
    normalized,
    options,
    rfc3339,
)
from hearth.server.respond import (
    Accept,
    Flow,
    answer_flow,
    checked,
    client_closed,
    open_answer,
    services_of,
    stream_answer,
    unless_disconnected,
)
from hearth.services import Services, loading, schema_limits

router = APIRouter(prefix="/api", tags=["ollama"])
Embedded = tuple[dict[str, Any], str, list[Any]] | None


def _services(request: Request) -> Services:
    return services_of(request)


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object body (same limits as every route); an empty body reads as {}."""
    return jsonbody.loads_object(await request.body(), empty=True)


def _answer_object(content: bytes, model: str) -> dict[str, Any]:
    """The engine's whole answer, which must be a JSON object (an upstream is a stranger)."""
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise EngineError(
            f"The engine of model '{model}' answered with something that is not a JSON object, "
            "as an OpenAI-compatible engine must. Check that engine (GET /v1/running names a "
            "local one's log in <home>/logs/) and try again.",
            code="engine_error",
        )
    return parsed


async def _opening(services: Services, entry: ModelEntry, call: Call) -> tuple[Answer, int]:
    """Check what the model can do, load it, open the engine's answer: (the answer, the
    load's nanoseconds). An engine's refusal is the caller's to read (`respond.checked`)."""
    thinks = await loading.check_capabilities(
        entry, call.name, images=call.images, think=call.think
    )
    if call.think is not None and not thinks:
        call.body.pop("chat_template_kwargs", None)
    schema_limits.check_request(call.body)  # before the load, not only before the engine
    load_ns = await loading.load(services, entry, call.num_ctx)
    return await services.open_inference(call.path, call.body, call.keep_alive), load_ns


async def _answer(request: Request, entry: ModelEntry, call: Call, *, chat: bool) -> Response:
    """Send `call` to the engine and answer in Ollama's shape, streamed or whole."""
    started = time.monotonic_ns()
    opening = _opening(_services(request), entry, call)
    reply = Reply(call.name, chat=chat)
    if call.stream:  # kept alive while it waits (server/respond.py): empty partial lines
        accept = _accept(entry.id, reply, started)
        return await stream_answer(request, opening, accept, beats(reply))
    ok, opened = await unless_disconnected(request, opening)
    if not ok or opened is None:
        return client_closed()
    answer = await checked(opened[0], entry.id)
    ok, content = await unless_disconnected(request, answer.read())
    if not ok or content is None:
        return client_closed()
    return _whole(content, entry.id, reply, started, opened[1])


def _whole(content: bytes, model: str, reply: Reply, started: int, load_ns: int) -> Response:
    """The engine's whole answer as Ollama's one object."""
    reply.add(EventReader().whole(_answer_object(content, model)))
    total = time.monotonic_ns() - started
    final = reply.final(time.time_ns(), total_ns=total, load_ns=load_ns, whole=True)
    return Response(json_bytes(final), media_type="application/json")


def _accept(model: str, reply: Reply, started: int) -> Accept[tuple[Answer, int]]:
    """A streamed answer's NDJSON writer, once the engine answered (`_opening`)."""

    async def accept(opened: tuple[Answer, int]) -> Flow | Response:
        answer, load_ns = await checked(opened[0], model), opened[1]
        if not answer.is_event_stream:  # an upstream that answered whole all the same
            return _whole(await answer.read(), model, reply, started, load_ns)

        def write(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            return ndjson(chunks, reply, started_ns=started, load_ns=load_ns)

        return await answer_flow(model, write)(answer)

    return accept


async def _load_or_unload(
    services: Services, entry: ModelEntry, call: Call, *, chat: bool
) -> Response:
    """An empty chat or prompt: load the model (keep_alive 0: unload it), as Ollama does."""
    reason = await loading.load_or_unload(services, entry, call.keep_alive, call.num_ctx)
    out: dict[str, Any] = {"model": call.name, "created_at": rfc3339(time.time())}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update(done=True, done_reason=reason)
    return JSONResponse(out)


@router.post("/chat")
async def chat(request: Request) -> Response:
    """Ollama's chat: NDJSON stream by default, one object with "stream": false."""
    body = await read_body(request)
    services = _services(request)
    entry = await catalog.resolve(services, model_name(body))
    call = chat_call(body, entry.id, loading.system_prompt(entry))
    if not call.body["messages"]:
        return await _load_or_unload(services, entry, call, chat=True)
    return await _answer(request, entry, call, chat=True)


@router.post("/generate")
async def generate(request: Request) -> Response:
    """Ollama's completion of a prompt (the chat template applies unless "raw": true)."""
    body = await read_body(request)
    services = _services(request)
    entry = await catalog.resolve(services, model_name(body))
    call = generate_call(body, entry.id, loading.system_prompt(entry))
    if not body.get("prompt") and not body.get("images"):
        return await _load_or_unload(services, entry, call, chat=False)
    return await _answer(request, entry, call, chat=False)


async def _embed(request: Request, *, legacy: bool) -> Embedded:
    """Both embedding routes: (usage, model name, vectors) from the engine's embeddings; None
    when the client left before the answer."""
    started = time.monotonic_ns()
    body = await read_body(request)
    services = _services(request)
    name = model_name(body)
    entry = await catalog.resolve(services, name)
    texts = embed_inputs(body, legacy=legacy)
    _, num_ctx = options(body.get("options"))
    raw_keep = body.get("keep_alive")
    keep_alive = None if raw_keep is None else keep_alive_param(raw_keep)
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise InvalidParameter("'dimensions' must be a positive integer.", param="dimensions")
    if not texts:
        return {"load_ns": 1, "total_ns": 1, "dimensions": dimensions}, name, []
    load_ns = await loading.load(services, entry, num_ctx)
    call_body = {"model": entry.id, "input": texts}
    opening = services.open_inference("embeddings", call_body, keep_alive)
    answer = await open_answer(request, opening, entry.id)
    if answer is None:
        return None
    reply = _answer_object(await answer.read(), entry.id)
    vectors = [item.get("embedding") for item in reply.get("data") or []]
    usage = dict(reply.get("usage") or {})
    usage.update(load_ns=load_ns, total_ns=time.monotonic_ns() - started, dimensions=dimensions)
    return usage, name, vectors


@router.post("/embed")
async def embed(request: Request) -> Response:
    """Ollama's embeddings: `input` a string or a list; unit-length vectors."""
    embedded = await _embed(request, legacy=False)
    if embedded is None:
        return client_closed()
    usage, name, vectors = embedded
    dimensions = usage["dimensions"]
    return JSONResponse(
        {
            "model": name,
            "embeddings": [normalized(v, dimensions) for v in vectors],
            "total_duration": max(usage["total_ns"], 1),
            "load_duration": max(usage["load_ns"], 1),
            "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
        }
    )


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    """Ollama's older embedding route: one `prompt`, one `embedding`."""
    embedded = await _embed(request, legacy=True)
    if embedded is None:
        return client_closed()
    vectors = embedded[2]
    return JSONResponse({"embedding": vectors[0] if vectors else []})
