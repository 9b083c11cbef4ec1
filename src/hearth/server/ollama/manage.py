"""Ollama's model routes: tags, show, ps, copy, delete, create, pull, version.

Thin translations into the service layer: names resolve through `services/ollama_names.py`
(Ollama's 404 from `catalog`), what a model's files say is read by `services/model_info.py`,
new models are made by `services/derive.py` (hard links, never a second copy of the
weights), pulls are Hearth's own pulls (Ollama names, `hf.co/...`, URLs) with their progress
rewritten as Ollama's status lines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearth import __version__
from hearth.core.errors import InvalidParameter, InvalidRequest
from hearth.core.modelfile_text import quote, quote_parameter
from hearth.downloads.ollama import map_params
from hearth.models.store import ModelEntry
from hearth.server.ollama import catalog
from hearth.server.ollama.pull import pull_lines
from hearth.server.ollama.routes import read_body
from hearth.server.ollama.stream import NDJSON, line
from hearth.server.ollama.translate import model_name, rfc3339
from hearth.server.respond import services_of, streaming
from hearth.server.sliced import SlicedResponse
from hearth.services import Services, model_info
from hearth.services.derive import ModelChanges
from hearth.services.model_info import ModelCard
from hearth.services.ollama_names import new_id, ollama_name

router = APIRouter(prefix="/api", tags=["ollama"])
#: What /api/version reports: the Ollama release whose API Hearth answers, checked field by field
#: against Ollama's api/types.go and server/routes.go at that tag (clients gate features on it:
#: Codex CLI's `--oss` wants 0.13.4 or newer, for /v1/responses). It promises the routes that
#: release serves for local models (/api/chat, generate, embed, embeddings, tags, show, ps,
#: pull, create, copy, delete, version; /v1/chat/completions, completions, embeddings, models,
#: responses) with its request fields: `think` levels, `tool_call_id`, tool-call `id`/`index`,
#: nested tool `properties`, and `truncate`/`shift`, read as Hearth behaves (it neither cuts a
#: prompt nor shifts the context: a prompt that does not fit is a 400 naming the size needed).
#: Not served: `logprobs`/`top_logprobs` on /api/chat and /api/generate (a 400 pointing to
#: /v1/chat/completions, which returns them), /api/push and /api/blobs, and the ollama.com
#: account routes (/api/me, /api/signout). Raise it only after checking the next release's
#: additions the same way (0.14 adds image generation fields and /v1/messages' Ollama side).
OLLAMA_API_VERSION = "0.13.5"
FAR_FUTURE = 253402300799.0  # 9999-12-31: keep_alive -1 (never unloaded)


def _services(request: Request) -> Services:
    return services_of(request)


@router.get("/version")
async def version() -> dict[str, str]:
    """The Ollama API version Hearth speaks (and Hearth's own)."""
    return {"version": OLLAMA_API_VERSION, "hearth": __version__}


@router.get("/tags")
async def tags(request: Request) -> Response:
    """Models that can answer, as Ollama lists local models: a view of the shared model list
    (scan in steps, new entries' details made in a worker thread; see `services/listing.py`)."""
    body = await _services(request).lists.shared_body(catalog.TAGS_LIST)
    return SlicedResponse(body, media_type="application/json")


@router.post("/show")
async def show(request: Request) -> dict[str, Any]:
    """One model: details, GGUF metadata, template, parameters, capabilities, license."""
    body = await read_body(request)
    entry = await catalog.resolve(_services(request), model_name(body))
    if entry.info is None:
        raise catalog.model_missing(entry.id)  # a broken folder: nothing to show
    # the GGUF header (and model.json's time) is read in a worker thread, never on the loop
    card = await model_info.card_off_loop(entry, header=True)
    return describe(card, verbose=body.get("verbose") is True)


def describe(card: ModelCard, *, verbose: bool = False) -> dict[str, Any]:
    """/api/show's answer, from the model's card (read with its GGUF header)."""
    entry, fact = card.entry, card.facts
    assert entry.info is not None
    meta = entry.info.metadata
    info = {k: (v if verbose or not isinstance(v, list) else []) for k, v in fact.header.items()}
    shown = card.tool_format()
    if shown is not None:  # not a GGUF key: how Hearth shows the model tools (README)
        info["hearth.tool_format"] = shown
    parameters = _parameters(entry)
    out: dict[str, Any] = {
        "license": meta.get("license") if isinstance(meta.get("license"), str) else "",
        "modelfile": _modelfile(entry, parameters),
        "parameters": "\n".join(f"{k:<30} {_shown(v)}" for k, v in parameters),
        "template": fact.chat_template or "",
        "details": catalog.details(entry, fact),
        "model_info": info,
        "capabilities": card.capabilities(),
        "modified_at": catalog.modified_at(card),
    }
    if isinstance(meta.get("system_prompt"), str):
        out["system"] = meta["system_prompt"]
    return out


def _parameters(entry: ModelEntry) -> list[tuple[str, str | int | float]]:
    """model_parameters (and ctx_len) under Ollama's PARAMETER names, with their values."""
    assert entry.info is not None
    rows: list[tuple[str, str | int | float]] = []
    for key, value in entry.info.model_parameters.items():
        name = catalog.PARAMETER_NAMES.get(key, key)
        if key == "stop" and isinstance(value, list):
            rows += [("stop", s) for s in value if isinstance(s, str)]
        elif isinstance(value, int | float | str) and key != "stream":
            rows.append((name, value))
    ctx = entry.info.engine_parameters.get("ctx_len")
    if isinstance(ctx, int | str):
        rows.append(("num_ctx", ctx))
    return rows


def _shown(value: str | int | float) -> str:
    """A parameter's value as /api/show's `parameters` text shows it (strings quoted)."""
    if not isinstance(value, str):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parameter(value: str | int | float) -> str:
    return quote_parameter(value) if isinstance(value, str) else str(value)


def _modelfile(entry: ModelEntry, parameters: list[tuple[str, str | int | float]]) -> str:
    """A Modelfile describing the model, which `hearth create -f` reads back exactly: every
    value is written by `modelfile.quote`, so no system prompt, template, license, stop
    string or file name (a stranger's text) can end its value early and add instructions."""
    assert entry.info is not None
    meta = entry.info.metadata
    lines = [f"# Modelfile generated by Hearth for {entry.id}"]
    lines.append(f"FROM {quote(str(entry.model_path or entry.id), bare=True)}")
    recorded = meta.get("ollama")
    ollama: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if isinstance(ollama.get("template"), str):
        lines.append(f"TEMPLATE {quote(ollama['template'])}")
    if isinstance(meta.get("system_prompt"), str):
        lines.append(f"SYSTEM {quote(meta['system_prompt'])}")
    lines += [f"PARAMETER {k} {_parameter(v)}" for k, v in parameters]
    if isinstance(meta.get("license"), str):
        lines.append(f"LICENSE {quote(meta['license'])}")
    return "\n".join(lines) + "\n"


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    """Loaded models, with when each unloads and its context length (their folders and GGUF
    headers read in a worker thread)."""
    return {"models": _loaded(await model_info.running_cards(_services(request)))}


def _loaded(running: list[tuple[dict[str, Any], ModelCard]]) -> list[dict[str, Any]]:
    """/api/ps's entries for the loaded models and their cards."""
    models = []
    for model, card in running:
        entry = card.entry
        name = ollama_name(entry)
        expires = model.get("expires_at")
        size = int(model.get("memory_estimate") or model.get("memory") or 0)
        params = model.get("engine_parameters") or {}
        models.append(
            {
                "name": name,
                "model": name,
                "size": size,
                "digest": card.digest,
                "details": catalog.details(entry, card.facts),
                "expires_at": rfc3339(expires if isinstance(expires, float) else FAR_FUTURE),
                "size_vram": size if int(params.get("ngl") or 0) > 0 else 0,
                "context_length": params.get("ctx_len"),
            }
        )
    return models


@router.delete("/delete")
async def delete(request: Request) -> Response:
    """Delete a model (its engine stops first; files used in place are never deleted)."""
    services = _services(request)
    entry = await catalog.resolve(services, model_name(await read_body(request)))
    await services.delete_model(entry.id)
    return Response(status_code=200)


@router.post("/copy")
async def copy(request: Request) -> Response:
    """A new model under another name sharing the source's files (hard links). 409 when the
    destination exists: Hearth never replaces a model folder by a copy."""
    body = await read_body(request)
    source, destination = body.get("source"), body.get("destination")
    if not isinstance(source, str) or not isinstance(destination, str) or not destination:
        raise InvalidRequest('Send {"source": "<model>", "destination": "<new name>"}.')
    services = _services(request)
    entry = await catalog.resolve(services, source)
    name = destination if ":" in destination else None
    await services.copy_model(entry.id, new_id(destination), ModelChanges(name=name))
    return Response(status_code=200)


def changes_from(body: dict[str, Any], name: str) -> ModelChanges:
    """Ollama's create fields -> ModelChanges (parameters mapped as `hearth pull` maps them)."""
    changes = ModelChanges(name=name if ":" in name else None)
    for key in ("system", "template"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"'{key}' must be a string.", param=key)
        setattr(changes, key, value)
    license_ = body.get("license")
    if isinstance(license_, list) and all(isinstance(x, str) for x in license_):
        license_ = "\n\n".join(license_)
    if license_ is not None and not isinstance(license_, str):
        raise InvalidParameter("'license' must be a string or a list of strings.", param="license")
    changes.license = license_
    params = body.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise InvalidParameter("'parameters' must be a JSON object.", param="parameters")
        model, engine, ignored = map_params([json.dumps(params)])
        changes.model_parameters, changes.engine_parameters, changes.ignored = (
            model,
            engine,
            ignored,
        )
    return changes


_UNSUPPORTED = {
    "files": 'uploaded blobs (files) are not supported: send "from" with a model name or the '
    "path of a .gguf in the Hearth home or an 'import_dirs' folder",
    "adapters": "adapters (LoRA) are not supported",
    "quantize": "quantizing is not supported: pull or import a quantized GGUF",
    "messages": "preset messages are not supported",
    "modelfile": 'the \'modelfile\' field is not supported: send "from", "system", '
    '"parameters" ... as fields (or use `hearth create NAME -f Modelfile`)',
}


@router.post("/create")
async def create(request: Request) -> Response:
    """A new model from an existing one (`from`: a name) or from a GGUF the server may read
    (`from`: a path in the home or an import_dirs folder), with system, template (recorded,
    never executed), parameters and license."""
    body = await read_body(request)
    name = model_name(body)
    for key, why in _UNSUPPORTED.items():
        if body.get(key):
            raise InvalidRequest(why, param=key)
    source = body.get("from")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest('"from" is required: the model (or .gguf path) to start from.')
    services = _services(request)
    changes = changes_from(body, name)
    model_id = new_id(name)
    if source.lower().endswith(".gguf") or source.startswith(("/", "./", "~")):
        await services.create_model_from_file(Path(source).expanduser(), model_id, changes)
    else:
        entry = await catalog.resolve(services, source)
        await services.copy_model(entry.id, model_id, changes)
    statuses = ["reading model metadata", "creating system layer", "writing manifest", "success"]
    if body.get("stream") is False:
        return JSONResponse({"status": "success"})
    content = b"".join(line({"status": s}) for s in statuses)
    return Response(content, media_type=NDJSON)


@router.post("/pull")
async def pull(request: Request) -> Response:
    """Pull an Ollama name, `hf.co/OWNER/REPO:QUANT` or a URL, with Ollama's status lines
    (or, with "stream": false, one {"status": "success"} at the end)."""
    body = await read_body(request)
    name = model_name(body)
    services = _services(request)
    lines = pull_lines(services, name)
    if body.get("stream") is False:
        last: dict[str, Any] = {}
        async for item in lines:
            last = item
        return _pull_answer(last)
    return streaming(_ndjson(lines), media_type=NDJSON)


async def _ndjson(items: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for item in items:
        item.pop("status_code", None)  # for the one-shot answer only
        yield line(item)


def _pull_answer(last: dict[str, Any]) -> Response:
    if "error" in last:
        status = int(last.pop("status_code", 500))
        return JSONResponse({"error": last["error"]}, status_code=status)
    return JSONResponse({"status": "success"})
