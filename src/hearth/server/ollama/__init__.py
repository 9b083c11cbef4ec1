"""Ollama's API on Hearth's port (`/api/*`, and `/` for liveness probes): a translation at the
face into the service layer. See the README's "Ollama clients" section."""

from __future__ import annotations

from fastapi import APIRouter

from hearth.server.ollama import manage, root, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(manage.router)
router.include_router(root.router)

__all__ = ["router"]
