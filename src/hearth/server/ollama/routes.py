"""Ollama's inference routes: /api/chat, /api/generate, /api/embed, /api/embeddings.

Each is a translation at the face (`translate.py`): the Ollama body becomes an OpenAI body,
which goes through the same service call as /v1 (`Services.open_inference`: load on demand,
keep_alive, engine selection), and the engine's answer comes back in Ollama's shape
(`stream.py` for NDJSON). Besides that, Hearth acts on three things itself:

- `num_ctx`: Ollama reloads a model with another context; so does Hearth, through a start with
  that `ctx_len` (`ensure_context`), bounded by the model's trained context;
- an empty `messages` / `prompt` loads the model (or with keep_alive 0 unloads it), as Ollama;
- `load_duration` is the time spent making sure the model is loaded before the request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.engines.events import engine_refusal
from hearth.errors import HearthError, InvalidParameter, InvalidRequest
from hearth.keepalive import keep_alive_param
from hearth.models.facts import facts_off_loop, model_capabilities
from hearth.models.store import ModelEntry
from hearth.server import jsonbody
from hearth.server.ollama import catalog
from hearth.server.ollama.stream import NDJSON, ndjson
from hearth.server.ollama.translate import (
    Call,
    Reply,
    chat_call,
    embed_inputs,
    generate_call,
    model_name,
    normalized,
    options,
    rfc3339,
)
from hearth.server.respond import CLIENT_CLOSED, unless_disconnected
from hearth.services import Services, schema_limits

router = APIRouter(prefix="/api", tags=["ollama"])
Embedded = tuple[dict[str, Any], str, list[Any]] | None


MIN_CTX = 256  # smaller contexts cannot hold a chat template's own tokens
MAX_CTX = 1 << 20  # when the GGUF does not say its trained context


def _services(request: Request) -> Services:
    return request.app.state.services


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON body (same limits as every route); an empty body reads as {}."""
    raw = await request.body()
    body = jsonbody.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise InvalidRequest('The request body must be a JSON object like {"model": "..."}.')
    return body


def system_prompt(entry: ModelEntry) -> str | None:
    meta = entry.info.metadata if entry.info is not None else {}
    value = meta.get("system_prompt") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


async def ensure_context(services: Services, entry: ModelEntry, num_ctx: int) -> None:
    """Have the model loaded with `num_ctx` tokens of context (clamped to what it was trained
    for, as Ollama does). A model loaded with another context is restarted once idle; the new
    one stays until another request asks otherwise or model.json changes."""
    trained = (await facts_off_loop(entry)).context_length or MAX_CTX
    wanted = max(MIN_CTX, min(num_ctx, trained, MAX_CTX))
    for model in services.running():
        if model["id"] == entry.id and model["engine_parameters"].get("ctx_len") == wanted:
            return
    await services.start_model(entry.id, {"ctx_len": wanted})


async def _load(services: Services, entry: ModelEntry, num_ctx: int | None) -> int:
    """Make sure the model is loaded; the nanoseconds that took (Ollama's load_duration)."""
    started = time.monotonic_ns()
    assert entry.info is not None
    if entry.info.is_remote:
        return 1
    if num_ctx is not None:
        await ensure_context(services, entry, num_ctx)
    elif services.status_of(entry)[0] != "running":
        await services.start_model(entry.id)
    return time.monotonic_ns() - started


async def _check_capabilities(entry: ModelEntry, call: Call) -> None:
    """Refuse what the model cannot do with Ollama's 400s, before anything loads (the facts
    may come from the GGUF header: read in a worker thread)."""
    caps = model_capabilities(entry, await facts_off_loop(entry))
    if call.images and "vision" not in caps:
        raise InvalidParameter(
            f'"{call.name}" does not support images (no vision projector: add one with '
            "engine_parameters.mmproj)",
            param="images",
        )
    if call.think not in (None, False) and "thinking" not in caps:
        raise InvalidParameter(f'"{call.name}" does not support thinking', param="think")
    if call.think is not None and "thinking" not in caps:
        call.body.pop("chat_template_kwargs", None)


async def _upstream_error(upstream: Any, model: str) -> HearthError:
    """The engine's refusal (4xx/5xx JSON) as a Hearth error, written in Ollama's shape."""
    return engine_refusal(upstream.status_code, await upstream.read(), model)


async def _answer(request: Request, entry: ModelEntry, call: Call, *, chat: bool) -> Response:
    """Send `call` to the engine and answer in Ollama's shape, streamed or whole."""
    started = time.monotonic_ns()
    services = _services(request)
    await _check_capabilities(entry, call)
    schema_limits.check_request(call.body)  # before the load, not only before the engine
    load_ns = await _load(services, entry, call.num_ctx)
    opening = services.open_inference(call.path, call.body, call.keep_alive)
    ok, upstream = await unless_disconnected(request, opening)
    if not ok or upstream is None:
        return Response(status_code=CLIENT_CLOSED)
    reply = Reply(call.name, chat=chat)
    if upstream.status_code != 200:
        raise await _upstream_error(upstream, entry.id)
    if upstream.is_event_stream:
        lines = ndjson(upstream.stream(), reply, started_ns=started, load_ns=load_ns)
        return StreamingResponse(lines, media_type=NDJSON, headers={"cache-control": "no-cache"})
    ok, content = await unless_disconnected(request, upstream.read())
    if not ok or content is None:
        return Response(status_code=CLIENT_CLOSED)
    reply.whole(json.loads(content))
    total = time.monotonic_ns() - started
    return JSONResponse(reply.final(time.time(), total_ns=total, load_ns=load_ns, whole=True))


async def _load_or_unload(
    services: Services, entry: ModelEntry, call: Call, *, chat: bool
) -> Response:
    """An empty chat or prompt: load the model (keep_alive 0: unload it), as Ollama does."""
    if call.keep_alive == 0:
        await services.stop_model(entry.id)
        reason = "unload"
    else:
        body: dict[str, Any] = {} if call.keep_alive is None else {"keep_alive": call.keep_alive}
        if call.num_ctx is not None:
            await ensure_context(services, entry, call.num_ctx)
        await services.start_model(entry.id, body)
        reason = "load"
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
    call = chat_call(body, entry.id, system_prompt(entry))
    if not call.body["messages"]:
        return await _load_or_unload(services, entry, call, chat=True)
    return await _answer(request, entry, call, chat=True)


@router.post("/generate")
async def generate(request: Request) -> Response:
    """Ollama's completion of a prompt (the chat template applies unless "raw": true)."""
    body = await read_body(request)
    services = _services(request)
    entry = await catalog.resolve(services, model_name(body))
    call = generate_call(body, entry.id, system_prompt(entry))
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
    load_ns = await _load(services, entry, num_ctx)
    call_body = {"model": entry.id, "input": texts}
    ok, upstream = await unless_disconnected(
        request, services.open_inference("embeddings", call_body, keep_alive)
    )
    if not ok or upstream is None:
        return None
    if upstream.status_code != 200:
        raise await _upstream_error(upstream, entry.id)
    reply = json.loads(await upstream.read())
    vectors = [item.get("embedding") for item in reply.get("data") or []]
    usage = dict(reply.get("usage") or {})
    usage.update(load_ns=load_ns, total_ns=time.monotonic_ns() - started, dimensions=dimensions)
    return usage, name, vectors


@router.post("/embed")
async def embed(request: Request) -> Response:
    """Ollama's embeddings: `input` a string or a list; unit-length vectors."""
    embedded = await _embed(request, legacy=False)
    if embedded is None:
        return Response(status_code=CLIENT_CLOSED)
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
        return Response(status_code=CLIENT_CLOSED)
    vectors = embedded[2]
    return JSONResponse({"embedding": vectors[0] if vectors else []})
