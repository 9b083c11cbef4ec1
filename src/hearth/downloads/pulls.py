"""Pulls: turn "download this model" (a model id, a URL, a Hugging Face reference) into jobs.

The model folder and a model.json naming the sources are written *before* any byte arrives, so
the model is listed at once as `downloading`, the drop-in importer leaves the folder alone, and
an interrupted pull is resumed by pulling the same model again. Once every file is complete and
verified, model.json is filled from the GGUF header exactly as an import would fill it. Tokens
(HF_TOKEN) travel only in request headers: never in model.json, never in logs.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hearth.downloads.common import disk_free, human
from hearth.downloads.hf import hf_endpoint, hf_token, resolve_hf
from hearth.downloads.jobs import DownloadManager, Job
from hearth.downloads.transfer import DISK_MARGIN
from hearth.downloads.urls import (
    FileSpec,
    classify_source,
    filename_from_url,
    parse_hf_ref,
    validate_url,
)
from hearth.errors import Conflict, InsufficientStorage, InvalidRequest
from hearth.models.gguf import read_gguf_header
from hearth.models.ids import id_from_filename, is_valid_id, readable_name, validate_model_id
from hearth.models.importer import build_model_json, is_projector
from hearth.models.store import ModelEntry, ModelStore

StatusAnswer = tuple[str, str | None] | None


class Pulls:
    """Starts and tracks pulls for one home. Must be used from the server's event loop."""

    def __init__(self, store: ModelStore, manager: DownloadManager | None = None) -> None:
        self.store = store
        self.manager = manager or DownloadManager()
        self._last_job: dict[str, Job] = {}

    # ---- entry points ----------------------------------------------------------------

    async def pull(self, source: str, model_id: str | None = None) -> Job | None:
        """A model id (its sources), a URL, or an HF reference. None: nothing left to fetch."""
        kind = classify_source(source)
        if kind == "path":
            if model_id is None and _looks_like_id(source) and self._exists(source):
                return self.download_model(source)
            raise InvalidRequest(
                f"'{source}' is not a model id here, an http(s) URL, or a Hugging Face reference "
                "(OWNER/REPO[:QUANT]). To add a file from this machine use `hearth models import`.",
                param="source",
            )
        if kind == "hf":
            ref = parse_hf_ref(source)
            assert ref is not None
            resolution = await resolve_hf(ref)
            specs = resolution.files
            note = resolution.note
        else:
            url = validate_url(source)
            specs = [FileSpec(url, filename_from_url(url), headers=_auth_for(url))]
            note = None
        first = next(s for s in specs if not is_projector(Path(s.filename), None))
        new_id = model_id or id_from_filename(_split_stem(first.filename))
        validate_model_id(new_id)
        return self._start_new(new_id, specs, note)

    def download_model(self, model_id: str) -> Job | None:
        """Fetch the missing files of an existing model from its `sources`."""
        entry = self.store.get(model_id)
        if entry.info is None:
            raise InvalidRequest(f"Model '{model_id}' is invalid: {entry.error}")
        specs = []
        for source in entry.info.sources:
            if (entry.folder / source.filename).is_file():
                continue
            if not source.url or urlsplit(source.url).scheme not in ("http", "https"):
                raise InvalidRequest(
                    f"models/{entry.folder.name}: {source.filename} is missing and its source "
                    "has no http(s) url to download it from. Add one to model.json's sources, "
                    "or put the file into the folder.",
                    param="sources",
                )
            specs.append(
                FileSpec(
                    source.url, source.filename, source.size, source.sha256, _auth_for(source.url)
                )
            )
        if not specs:
            if entry.info.sources:
                return None  # every file is present
            raise InvalidRequest(
                f"Model '{model_id}' lists no sources, so there is nothing to download. Add "
                '"sources": [{"filename", "url"}] to its model.json.',
                param="sources",
            )
        return self._start(entry.id, entry.folder, specs)

    # ---- status for GET /v1/models ----------------------------------------------------

    def status(self, entry: ModelEntry) -> StatusAnswer:
        job = self._last_job.get(entry.id)
        if job is None:
            return None
        if not job.finished:
            return "downloading", None
        if job.state == "failed" and entry.status != "ready":
            return entry.status, f"The last download failed: {job.error}"
        return None

    # ---- internals -------------------------------------------------------------------

    def _exists(self, model_id: str) -> bool:
        try:
            self.store.get(model_id)
        except Exception:
            return False
        return True

    def _start_new(self, model_id: str, specs: list[FileSpec], note: str | None) -> Job | None:
        folder = self.store.models_dir / model_id
        if (folder / "model.json").exists():
            entry = self.store.get(model_id)
            names = {s.filename for s in entry.info.sources} if entry.info else set()
            if names != {s.filename for s in specs}:
                raise Conflict(
                    f"A model '{model_id}' already exists with other files. Pick another id "
                    '(--id / "id"), or remove it first.'
                )
            return self.download_model(model_id)
        projector = next((s for s in specs if is_projector(Path(s.filename), None)), None)
        raw: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "engine": "llama-cpp",
            "sources": [s.to_source() for s in specs],
        }
        if note:
            raw["description"] = note
        if projector is not None:
            raw["engine_parameters"] = {"mmproj": projector.filename}
        self.store.create(model_id, raw)
        return self._start(model_id, folder, specs)

    def _start(self, model_id: str, folder: Path, specs: list[FileSpec]) -> Job:
        _check_space(folder, specs)

        async def complete(job: Job) -> None:
            await asyncio.to_thread(self._fill_from_header, model_id, job)

        job = self.manager.start(model_id, specs, folder, on_complete=complete)
        self._last_job[model_id] = job
        return job

    def _fill_from_header(self, model_id: str, job: Job) -> None:
        """Record what we now know (sizes, hashes, the GGUF header) in model.json."""
        entry = self.store.get(model_id)
        assert entry.info is not None
        results = {r.path.name: r for r in job.results}
        sources = []
        for source in entry.info.sources:
            item = source.model_dump(exclude_none=True)
            result = results.get(source.filename)
            if result is not None:
                item["size"], item["sha256"] = result.size, result.sha256
            sources.append(item)
        files = [
            entry.folder / s.filename
            for s in entry.info.sources
            if not is_projector(Path(s.filename), None) and (entry.folder / s.filename).is_file()
        ]
        infos = [read_gguf_header(p) for p in files[:1]] + [None] * (len(files) - 1)
        if not files:
            self.store.update(model_id, {"sources": sources})
            return
        display = readable_name(_split_stem(files[0].name)) if files else entry.info.name
        generated = build_model_json(model_id, files, infos, display_name=display)
        engine = dict(generated["engine_parameters"])
        engine.update(entry.info.engine_parameters)  # never override what is already set
        model_params = dict(generated["model_parameters"])
        model_params.update(entry.info.model_parameters)
        raw = entry.raw or {}
        patch: dict[str, Any] = {
            key: generated[key] for key in ("format", "name", "created") if key not in raw
        }
        patch.update(
            engine_parameters=engine,
            model_parameters=model_params,
            metadata={**generated["metadata"], **entry.info.metadata},
            sources=sources,
        )
        self.store.update(model_id, patch)


def _check_space(folder: Path, specs: list[FileSpec]) -> None:
    """Refuse before starting when the sizes are known and the whole pull cannot fit."""
    if any(s.size is None for s in specs):
        return  # checked per file once the server says how big it is
    needed = 0
    for spec in specs:
        part = folder / f"{spec.filename}.part"
        have = part.stat().st_size if part.exists() else 0
        needed += max(0, (spec.size or 0) - have)
    free = disk_free(folder)
    if needed + DISK_MARGIN > free:
        raise InsufficientStorage(
            f"Not enough disk space for this download: it needs {human(needed)} more (plus a "
            f"{human(DISK_MARGIN)} margin) and {folder.parent} has {human(free)} free. Free some "
            "space (e.g. `hearth models rm` a model you no longer use) and pull again."
        )


def _auth_for(url: str) -> dict[str, str] | None:
    """HF_TOKEN goes only to the Hugging Face endpoint (the one HF_ENDPOINT names)."""
    token = hf_token()
    if not token:
        return None
    host = urlsplit(url).hostname or ""
    hf_hosts = {urlsplit(hf_endpoint()).hostname, "huggingface.co", "hf.co"}
    return {"Authorization": f"Bearer {token}"} if host in hf_hosts else None


def _split_stem(filename: str) -> str:
    """'name-00001-of-00003.gguf' -> 'name.gguf' so a split model gets the model's name."""
    return re.sub(r"-\d{5}-of-\d{5}(\.gguf)$", r"\1", filename, flags=re.IGNORECASE)


def _looks_like_id(text: str) -> bool:
    return is_valid_id(text)
