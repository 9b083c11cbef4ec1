"""The OpenAI Models API and Hearth's model management: /v1/models.

GET /v1/models and GET /v1/models/{id} answer in Anthropic's Models shape when the request
carries an `anthropic-version` header (Anthropic's SDK and Claude Code send it on every call;
OpenAI's clients never do), in OpenAI's otherwise: one path, two dialects, told apart as
Anthropic's own API would see them. The shaping is `model_pages.py`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Request, Response

from hearth.server import model_pages
from hearth.server.respond import services_of
from hearth.server.schemas import ERRORS, DeletedModel, ModelList, ModelObject
from hearth.server.sliced import SlicedResponse
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["models"])


def _services(request: Request) -> Services:
    return services_of(request)


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def list_models(request: Request) -> Response:
    """List every model folder; broken ones carry status "invalid" and an error. With an
    `anthropic-version` header: Anthropic's page (`limit`, `after_id`, `before_id`)."""
    body = await _services(request).models_list_body()
    if model_pages.is_anthropic(request.headers):
        page = model_pages.anthropic_page(json.loads(body)["data"], request.query_params)
        return _json(page)
    return SlicedResponse(body, media_type="application/json")


@router.get("/models/{model_id:path}", response_model=ModelObject, responses=ERRORS)
def retrieve_model(model_id: str, request: Request) -> Response:
    model = _services(request).get_model(model_id)
    if model_pages.is_anthropic(request.headers):
        return _json(model_pages.anthropic_model(model))
    return _json(model)


@router.patch("/models/{model_id:path}", response_model=ModelObject, responses=ERRORS)
def update_model(
    model_id: str,
    request: Request,
    patch: dict[str, Any] = Body(
        ...,
        examples=[{"engine_parameters": {"ctx_len": 4096}, "description": "my favourite"}],
        description="Fields to merge into model.json (objects merge, null removes a field).",
    ),
) -> Response:
    """Merge-update model.json: validated, written atomically, unknown fields kept."""
    return _json(_services(request).update_model(model_id, patch))


@router.delete("/models/{model_id:path}", response_model=DeletedModel, responses=ERRORS)
async def delete_model(model_id: str, request: Request) -> Response:
    """Delete the model's folder (stopping its engine first). A linked original file outside
    the home is never deleted."""
    return _json(await _services(request).delete_model(model_id))
