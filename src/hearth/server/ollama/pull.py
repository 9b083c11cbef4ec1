"""POST /api/pull: Hearth's pull, reported as Ollama's status lines.

    {"status": "pulling manifest"}
    {"status": "pulling <digest>", "digest": "sha256:...", "total": N, "completed": n}  (repeated)
    {"status": "verifying sha256 digest"}
    {"status": "writing manifest"}
    {"status": "success"}

A failure is an `{"error": "..."}` line (the `ollama` client raises it as ResponseError). The
name is anything `hearth pull` takes; a name that already is a model here fetches that model's
missing files (none: straight to "success"). A model pulled from Hugging Face by an Ollama
client's name (`hf.co/OWNER/REPO:QUANT`) records that name, so the client finds it by it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hearth.core.errors import HearthError
from hearth.downloads.jobs import Job
from hearth.services import Services, ollama_names


async def _source(services: Services, name: str) -> tuple[str, bool]:
    """(what to hand `Services.pull`: an existing model's id, else the name as sent; whether
    that model is already whole: valid, and listing no sources to fetch, as a model imported
    or linked here does; Ollama answers "success" for a model it has, and Codex's `--oss`
    pulls any model it does not find by its exact name in /api/tags)."""
    try:
        entry = await ollama_names.find(services, name)
    except HearthError:
        return name, False
    if entry is None:
        return name, False
    return entry.id, entry.info is not None and not entry.info.sources


def _label(job: Job, index: int) -> str:
    spec = job.specs[index]
    return f"sha256:{spec.sha256}" if spec.sha256 else spec.filename


async def _progress(services: Services, job: Job) -> AsyncIterator[dict[str, Any]]:
    async for snap in services.download_progress(job.id):
        for index, item in enumerate(snap["files"]):
            digest = _label(job, index)
            yield {
                "status": f"pulling {digest.removeprefix('sha256:')[:12]}",
                "digest": digest,
                "total": int(item["total"] or 0),
                "completed": int(item["done"] or 0),
            }


async def pull_lines(services: Services, name: str) -> AsyncIterator[dict[str, Any]]:
    """Ollama's status lines for pulling `name` (an error ends them with an `error` line)."""
    yield {"status": "pulling manifest"}
    source, whole = await _source(services, name)
    try:
        model_id, job = (source, None) if whole else await services.pull(source)
    except HearthError as exc:
        yield {"error": exc.message, "status_code": exc.status}
        return
    if job is not None:
        async for item in _progress(services, job):
            yield item
        final = await job.wait()
        if final.state != "completed":
            yield {"error": final.error or f"the pull ended {final.state}", "status_code": 502}
            return
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    if job is not None:  # a Jan data folder moves a finished pull to Jan's id
        model_id = job.model_id
    await ollama_names.record_name(services, model_id, name)
    yield {"status": "success"}
