"""Ollama's API on Hearth's port (`/api/*`): a translation at the face into the service layer.
See the README's "Ollama clients" section. (`/`, which Ollama's clients probe, is answered by
`server/root.py`: the web page lives there too.)"""

from __future__ import annotations

from fastapi import APIRouter

from hearth.server.ollama import manage, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(manage.router)

__all__ = ["router"]
