"""Jan's assistants over OpenAI's Assistants API: /v1/assistants.

Thin: each route translates HTTP to `Services.assistants` (hearth/services/assistants.py),
where the rules live. File work runs in the thread pool (plain `def` routes). Errors have
OpenAI's shape (a /v1 path); OpenAI's SDK modifies with POST, as here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response

from hearth.server.respond import services_of
from hearth.server.schemas import ERRORS
from hearth.services.assistants import AssistantService
from hearth.services.threads import encode_json

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])

_EXAMPLE = {
    "name": "Travel guide",
    "avatar": "🧭",
    "description": "Short answers about places.",
    "instructions": "You are a concise travel guide. Today is {{current_date}}.",
    "parameters": {"temperature": 0.7, "max_tokens": 512},
}
_LIMIT = Query(100, ge=1, le=1000, description="How many to answer (1 to 1000).")


def _assistants(request: Request) -> AssistantService:
    return services_of(request).assistants


def _json(body: Any) -> Response:
    return Response(encode_json(body), media_type="application/json")


@router.get("", responses=ERRORS)
def list_assistants(
    request: Request,
    limit: int = _LIMIT,
    after: str | None = Query(None, max_length=200),
    order: str = Query("asc", pattern="^(asc|desc)$"),
) -> Response:
    """Assistants: Jan's default `jan` first, then by name (a broken one with its `error`)."""
    return _json(_assistants(request).list_assistants(limit, after, order))


@router.post("", responses=ERRORS)
def create_assistant(
    request: Request, body: dict[str, Any] | None = Body(None, examples=[_EXAMPLE])
) -> Response:
    """A new assistants/<id>/assistant.json in Jan's shape (id from `id`, else the name)."""
    return _json(_assistants(request).create_assistant(body))


@router.get("/{assistant_id}", responses=ERRORS)
def get_assistant(assistant_id: str, request: Request) -> Response:
    return _json(_assistants(request).get_assistant(assistant_id))


@router.post("/{assistant_id}", responses=ERRORS)
def modify_assistant(
    assistant_id: str, request: Request, body: dict[str, Any] = Body(...)
) -> Response:
    """Change the fields named; every other key of the file is kept; metadata merges."""
    return _json(_assistants(request).modify_assistant(assistant_id, body))


@router.delete("/{assistant_id}", responses=ERRORS)
def delete_assistant(assistant_id: str, request: Request) -> Response:
    """Remove assistant.json (the folder stays, as Jan leaves it)."""
    return _json(_assistants(request).delete_assistant(assistant_id))
