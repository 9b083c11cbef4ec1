"""Wire shapes of Hearth's own API (OpenAI's where one exists). Unknown fields are tolerated."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelObject(BaseModel):
    """OpenAI's model object plus model.json's fields and Hearth's live status."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    name: str | None = None
    status: Literal["ready", "missing", "downloading", "starting", "running", "failed", "invalid"]
    error: str | None = None
    size: int = Field(0, description="Bytes of the model's files present on disk.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class DeletedModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input"},
    404: {"model": ErrorResponse, "description": "No such model"},
    409: {"model": ErrorResponse, "description": "Conflict"},
}
