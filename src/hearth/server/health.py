"""Readiness: GET /health answers once the server is serving."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hearth import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    services = request.app.state.services
    return {
        "status": "ok",
        "service": "hearth",
        "version": __version__,
        "home": str(services.settings.home),
    }
