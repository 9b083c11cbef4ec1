"""Importing over the API: POST /v1/models/import and the list of files that failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hearth.server.respond import services_of
from hearth.server.schemas import ERRORS, ModelObject
from hearth.services import Services

router = APIRouter(prefix="/v1/models", tags=["import"])


class ImportRequest(BaseModel):
    path: str = Field(
        description="A .gguf on this machine, inside the home or an import_dirs folder."
    )
    id: str | None = Field(None, description="Model id (default: derived from the file name).")
    mode: Literal["move", "copy", "link"] = Field(
        "copy",
        description="copy (default; a hard link when on the same filesystem), move (rename), "
        "or link (reference the file where it lies; it is never deleted by Hearth).",
    )


class ImportErrorItem(BaseModel):
    path: str
    error: str
    state: Literal["failed", "waiting"]
    time: int


class ImportErrorList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ImportErrorItem]


def _services(request: Request) -> Services:
    return services_of(request)


@router.post(
    "/import", response_model=ModelObject, status_code=201, responses={**ERRORS, 403: ERRORS[400]}
)
def import_model(body: ImportRequest, request: Request) -> Response:
    """Import a model file; reads only paths inside the home or the `import_dirs` setting."""
    model = _services(request).import_model(
        Path(body.path), model_id=body.id, mode=body.mode, check_allowed=True
    )
    return Response(json.dumps(model), 201, media_type="application/json")


@router.get("/import/errors", response_model=ImportErrorList)
def import_errors(request: Request) -> dict[str, Any]:
    """Files in models/ that were not imported, and why (or which split part is awaited)."""
    return {"object": "list", "data": _services(request).import_errors()}
