"""Downloads over the API: start pulls, list jobs, follow one (JSON or SSE), cancel one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hearth.downloads.jobs import Job
from hearth.server.respond import services_of
from hearth.server.schemas import ERRORS
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["downloads"])


class PullRequest(BaseModel):
    source: str = Field(
        description="An http(s) URL of a .gguf, a Hugging Face reference "
        "(OWNER/REPO[:QUANT] or hf.co/OWNER/REPO[:QUANT]), an Ollama name (NAME[:TAG], or "
        "ollama.com/OWNER/NAME[:TAG]), or an existing model's id."
    )
    id: str | None = Field(None, description="Model id (default: from the file name).")


def _services(request: Request) -> Services:
    return services_of(request)


def _job_body(job: Job | None, model_id: str) -> dict[str, Any]:
    if job is None:  # every file is already there
        return {
            **{"id": None, "object": "download", "model_id": model_id, "state": "completed"},
            **{"files": [], "done": 0, "total": 0, "speed": 0.0, "eta": None, "error": None},
        }
    return {"object": "download", **job.to_dict()}


def _accepted(job: Job | None, model_id: str) -> Response:
    status = 200 if job is None or job.finished else 202
    return Response(json.dumps(_job_body(job, model_id)), status, media_type="application/json")


@router.post("/models/pull", status_code=202, responses=ERRORS)
async def pull(body: PullRequest, request: Request) -> Response:
    """Start pulling a URL, a Hugging Face or an Ollama model; listed at once as downloading."""
    model_id, job = await _services(request).pull(body.source, body.id)
    return _accepted(job, model_id)


@router.post("/models/{model_id:path}/download", status_code=202, responses=ERRORS)
async def download(model_id: str, request: Request) -> Response:
    """Fetch the missing files of a model from its `sources` (resuming any `.part`)."""
    return _accepted(_services(request).download(model_id), model_id)


@router.get(
    "/models/download/{model_id}", status_code=202, responses=ERRORS, include_in_schema=False
)
async def download_jan(model_id: str, request: Request) -> Response:
    """Jan's spelling of POST /v1/models/{id}/download."""
    return _accepted(_services(request).download(model_id), model_id)


@router.get("/downloads")
async def list_downloads(request: Request) -> dict[str, Any]:
    """Every download job of this server run: progress, speed, ETA, state, error."""
    jobs = _services(request).downloads()
    return {"object": "list", "data": [{"object": "download", **job} for job in jobs]}


@router.get("/downloads/{job_id}", responses=ERRORS)
async def get_download(job_id: str, request: Request) -> Response:
    """One job; with `Accept: text/event-stream`, a stream of progress events until it ends."""
    services = _services(request)
    job = services.get_download(job_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return _download_json(job)

    async def events() -> AsyncIterator[bytes]:
        async for snap in services.download_progress(job_id):
            data = json.dumps({"object": "download", **snap})
            yield f"event: progress\ndata: {data}\n\n".encode()
        yield b"event: end\ndata: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.delete("/downloads/{job_id}", responses=ERRORS)
async def cancel_download(job_id: str, request: Request) -> Response:
    """Cancel a job; its `.part` files stay, so pulling the model again resumes."""
    return _download_json(await _services(request).cancel_download(job_id))


def _download_json(job: dict[str, Any]) -> Response:
    return Response(json.dumps({"object": "download", **job}), media_type="application/json")
