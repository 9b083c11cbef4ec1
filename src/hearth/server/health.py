"""Readiness: GET /health answers once the server is serving.

It is open to all (process managers and the CLI poll it), so when an API key is set a caller
without the key learns only that the server is up: not its version, not where its home is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hearth import __version__
from hearth.server.security import AUTHENTICATED

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """{"status": "ok"} once serving; with the API key (or none set) also service, version
    and home, which the CLI uses to recognise the server of its own home."""
    if not getattr(request.state, AUTHENTICATED, False):
        return {"status": "ok"}
    services = request.app.state.services
    return {
        "status": "ok",
        "service": "hearth",
        "version": __version__,
        "home": str(services.settings.home),
    }
