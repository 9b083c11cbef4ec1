"""Load and unload models by hand, and see what is loaded: start, stop, /v1/running.

Models also load by themselves on their first request; these routes are for warming one up
ahead of time with chosen engine parameters, freeing memory now, and seeing what runs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request

from hearth.engines.params import KEEP_ALIVE_HELP, parse_keep_alive
from hearth.errors import InvalidParameter, InvalidRequest
from hearth.server.schemas import ERRORS
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["running"])

_START_BODY = Body(
    None,
    examples=[{"ctx_len": 2048, "n_parallel": 4, "keep_alive": "30m"}],
    description=(
        "Engine parameters for this load, over engine.json and model.json (ctx_len, ngl, "
        "n_parallel, ...), and keep_alive. All optional; an empty body uses the model's own."
    ),
)


def _services(request: Request) -> Services:
    return request.app.state.services


async def _start(model_id: str, request: Request, body: dict[str, Any] | None) -> dict[str, Any]:
    if body is not None and not isinstance(body, dict):
        raise InvalidRequest(
            'The body must be a JSON object of engine parameters, like {"ctx_len": 4096}.'
        )
    params = dict(body or {})
    keep_alive = params.pop("keep_alive", None)
    if keep_alive is not None:
        try:
            keep_alive = parse_keep_alive(keep_alive)
        except ValueError:
            raise InvalidParameter(
                f"'keep_alive' must be {KEEP_ALIVE_HELP}; got {keep_alive!r}.", param="keep_alive"
            ) from None
    return await _services(request).engines.start(model_id, params, keep_alive)


@router.post("/models/{model_id}/start", responses=ERRORS)
async def start_model(
    model_id: str, request: Request, body: dict[str, Any] | None = _START_BODY
) -> dict[str, Any]:
    """Load a model and answer once it serves, with its pid, port and load_seconds.

    Already loaded with the same settings: answers at once. Loaded with other settings: it is
    restarted once its in-flight requests finish.
    """
    return await _start(model_id, request, body)


@router.put("/models/{model_id}/start", responses=ERRORS, include_in_schema=False)
async def start_model_put(
    model_id: str, request: Request, body: dict[str, Any] | None = _START_BODY
) -> dict[str, Any]:
    return await _start(model_id, request, body)


async def _stop(model_id: str, request: Request, force: bool) -> dict[str, Any]:
    services = _services(request)
    stopped = await services.engines.stop(model_id, force=force)
    entry = services.store.get(model_id)
    status, _ = services.status_of(entry)
    return {"id": entry.id, "object": "model", "stopped": stopped, "status": status}


_FORCE = Query(False, description="Stop now, failing in-flight requests, not after them.")


@router.post("/models/{model_id}/stop", responses=ERRORS)
async def stop_model(model_id: str, request: Request, force: bool = _FORCE) -> dict[str, Any]:
    """Unload a model: its in-flight requests finish first (unless force), then the engine
    stops. `stopped` is false if it was not loaded."""
    return await _stop(model_id, request, force)


@router.put("/models/{model_id}/stop", responses=ERRORS, include_in_schema=False)
async def stop_model_put(model_id: str, request: Request, force: bool = _FORCE) -> dict[str, Any]:
    return await _stop(model_id, request, force)


@router.get("/running")
async def running(request: Request) -> dict[str, Any]:
    """Loaded models, most recently used first: pid, port, memory (RSS bytes), since, load
    time, requests served, active requests, keep_alive and when it expires (unix seconds)."""
    return {"object": "list", "data": _services(request).engines.running()}
