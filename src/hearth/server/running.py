"""Load and unload models by hand, and see what is loaded: start, stop, /v1/running.

Models also load by themselves on their first request; these routes are for warming one up
ahead of time with chosen engine parameters, freeing memory now, and seeing what runs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request

from hearth.server.respond import services_of
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
    return services_of(request)


@router.post("/models/{model_id:path}/start", responses=ERRORS)
async def start_model(
    model_id: str, request: Request, body: dict[str, Any] | None = _START_BODY
) -> dict[str, Any]:
    """Load a model and answer once it serves, with its pid, port and load_seconds.

    Already loaded with the same settings: answers at once. Loaded with other settings: it is
    restarted once its in-flight requests finish.
    """
    return await _services(request).start_model(model_id, body)


@router.put("/models/{model_id:path}/start", responses=ERRORS, include_in_schema=False)
async def start_model_put(
    model_id: str, request: Request, body: dict[str, Any] | None = _START_BODY
) -> dict[str, Any]:
    return await _services(request).start_model(model_id, body)


_FORCE = Query(False, description="Stop now, failing in-flight requests, not after them.")


@router.post("/models/{model_id:path}/stop", responses=ERRORS)
async def stop_model(model_id: str, request: Request, force: bool = _FORCE) -> dict[str, Any]:
    """Unload a model: its in-flight requests finish first (unless force), then the engine
    stops. `stopped` is false if it was not loaded."""
    return await _services(request).stop_model(model_id, force=force)


@router.put("/models/{model_id:path}/stop", responses=ERRORS, include_in_schema=False)
async def stop_model_put(model_id: str, request: Request, force: bool = _FORCE) -> dict[str, Any]:
    return await _services(request).stop_model(model_id, force=force)


@router.get("/running")
async def running(request: Request) -> dict[str, Any]:
    """Loaded models, most recently used first: pid, port, memory (RSS bytes), since, load
    time, requests served, active requests, keep_alive and when it expires (unix seconds)."""
    return {"object": "list", "data": _services(request).running()}
