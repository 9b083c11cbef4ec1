"""New models made from existing ones: copy (`ollama cp`) and create (`ollama create`).

A derived model is an ordinary model folder: its own model.json and its own directory entry
for every file. Files are never duplicated when avoidable: a file inside the source's folder
is hard-linked (instant, no space; deleting either model leaves the other whole; copied only
across file systems), and a file the source uses in place (a linked import, an `import_dirs`
file) is used in place by the copy too, through the same `file://` source. The new record
says where it came from (`metadata.derived_from`).

`ModelChanges` are what Ollama's create carries: a system prompt, a (recorded, never
rendered) Ollama template, a license and parameters (already mapped to Hearth's names).

Wire onto `Services` as thin methods, e.g.:

    async def copy_model(self, source, new_id, changes=None): return await copy_model(self, ...)
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hearth.core.errors import Conflict, InvalidRequest
from hearth.downloads.blobs import link_or_copy
from hearth.models.ids import validate_model_id
from hearth.models.janmodels import JAN_SAMPLING_KEYS
from hearth.models.janwrite import jan_patch
from hearth.models.links import is_inside
from hearth.models.store import ModelEntry, ModelStore


class Services(Protocol):
    """What deriving a model needs of the service layer (`services.core.Services`): a protocol,
    so that the service layer may call this module without the two importing each other."""

    store: ModelStore

    def model_json(self, entry: ModelEntry) -> dict[str, Any]: ...

    def get_model(self, model_id: str) -> dict[str, Any]: ...

    def update_model(self, model_id: str, patch: Any) -> dict[str, Any]: ...

    def import_model(
        self, path: Path, *, model_id: str | None = ..., mode: str = ..., check_allowed: bool = ...
    ) -> dict[str, Any]: ...


@dataclass
class ModelChanges:
    """What a create sets on the new model (None: keep the source's)."""

    system: str | None = None
    template: str | None = None
    license: str | None = None
    name: str | None = None  # the Ollama name it was created under
    model_parameters: dict[str, Any] = field(default_factory=dict)
    engine_parameters: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def derived_json(entry: ModelEntry, new_id: str, changes: ModelChanges) -> dict[str, Any]:
    """The new model.json: the source's normalized record, its sources kept for now (rewritten
    by `_place_files`), the changes applied."""
    assert entry.info is not None
    raw = entry.info.model_dump(mode="json", exclude_none=True)
    raw.pop("assets", None)
    raw.update(id=new_id, name=changes.name or new_id, created=int(time.time()))
    metadata = copy.deepcopy(raw.get("metadata") or {})
    metadata["derived_from"] = entry.id
    ollama = dict(metadata.get("ollama") or {}) if isinstance(metadata.get("ollama"), dict) else {}
    ollama.pop("name", None)
    if changes.name:
        ollama["name"] = changes.name
    if changes.template is not None:
        ollama["template"] = changes.template  # recorded only: the GGUF's template runs
    if changes.ignored:
        ollama["ignored_params"] = changes.ignored
    metadata["ollama"] = ollama
    if changes.system is not None:
        metadata["system_prompt"] = changes.system
    if changes.license is not None:
        metadata["license"] = changes.license
    raw["metadata"] = metadata
    raw["model_parameters"] = {**(raw.get("model_parameters") or {}), **changes.model_parameters}
    raw["engine_parameters"] = {**(raw.get("engine_parameters") or {}), **changes.engine_parameters}
    return raw


async def copy_model(
    services: Services, source_id: str, new_id: str, changes: ModelChanges | None = None
) -> dict[str, Any]:
    """Make model `new_id` from model `source_id` (with `changes`); answers its API object.
    409 when `new_id` exists: a copy never replaces a model. All in a worker thread: the checks
    read folders, and the answer may read the GGUF header (a hand-written model.json)."""
    return await asyncio.to_thread(_copy, services, source_id, new_id, changes)


def _copy(
    services: Services, source_id: str, new_id: str, changes: ModelChanges | None
) -> dict[str, Any]:
    validate_model_id(new_id)
    entry = services.store.get(source_id)
    if entry.info is None:
        raise InvalidRequest(f"Model '{entry.id}' cannot be copied: {entry.error}", param="model")
    if not entry.info.is_remote and entry.status != "ready":
        raise Conflict(f"Model '{entry.id}' is not ready: its files are missing or downloading.")
    if services.store.exists(new_id):
        raise Conflict(
            f"A model '{new_id}' already exists. Delete it first (DELETE /api/delete) or choose "
            "another name."
        )
    raw = derived_json(entry, new_id, changes or ModelChanges())
    return services.model_json(_create(services, entry, new_id, raw))


def _create(services: Services, entry: ModelEntry, new_id: str, raw: dict[str, Any]) -> ModelEntry:
    store = services.store
    folder = store.models_dir / new_id
    raw["sources"] = _place_files(entry, folder, dry_run=True)
    existed = folder.exists()
    created = False
    try:
        store.create(new_id, raw)
        created = True
        _place_files(entry, folder, dry_run=False)
    except BaseException:
        if created or (not existed and _is_empty(folder)):
            _remove_quietly(folder)  # only what this call made
        raise
    return store.get(new_id)


def _place_files(entry: ModelEntry, folder: Path, *, dry_run: bool) -> list[dict[str, Any]]:
    """The new model's sources; unless `dry_run`, also its files (hard links or copies)."""
    assert entry.info is not None
    real_source = os.path.realpath(entry.folder)
    by_name = {s.filename: s for s in entry.info.sources}
    sources: list[dict[str, Any]] = []
    for path in _files(entry):
        real = os.path.realpath(path)
        known = by_name.get(path.name)
        source: dict[str, Any] = {"filename": path.name, "size": os.path.getsize(real)}
        if known is not None and known.sha256:
            source["sha256"] = known.sha256
        if path in entry.external or not is_inside(real, real_source):
            source["url"] = Path(real).as_uri()  # used in place, as the source uses it
        elif not dry_run:
            link_or_copy(Path(real), folder / path.name)
        sources.append(source)
    return sources


def _files(entry: ModelEntry) -> list[Path]:
    """The source's files, the projector too when its sources do not list it."""
    assert entry.info is not None
    files = list(entry.files)
    mmproj = entry.info.engine_parameters.get("mmproj")
    if isinstance(mmproj, str) and "/" not in mmproj and "\x00" not in mmproj:
        candidate = entry.folder / mmproj
        if candidate.is_file() and candidate not in files:
            files.append(candidate)
    return files


def _is_empty(folder: Path) -> bool:
    try:
        return not any(folder.iterdir())
    except OSError:
        return False


def _remove_quietly(folder: Path) -> None:
    try:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    except OSError:
        pass


async def create_from_file(
    services: Services, path: Path, new_id: str, changes: ModelChanges | None = None
) -> dict[str, Any]:
    """Import the GGUF at `path` as model `new_id`, then apply `changes`. Only files the API
    may read (the home, `import_dirs`) are accepted: the importer refuses the rest with 403."""
    validate_model_id(new_id)
    if await asyncio.to_thread(services.store.exists, new_id):
        raise Conflict(
            f"A model '{new_id}' already exists. Delete it first or choose another name."
        )
    patch = changes_patch(changes or ModelChanges())
    if patch and services.store.jan is not None:
        _check_jan_patch(patch)  # refused before anything is imported
    await asyncio.to_thread(
        services.import_model, path, model_id=new_id, mode="copy", check_allowed=True
    )
    if patch:
        try:
            return await asyncio.to_thread(services.update_model, new_id, patch)
        except Exception:
            await asyncio.to_thread(services.store.delete, new_id)  # no half-made model
            raise
    return await asyncio.to_thread(services.get_model, new_id)  # may read the GGUF header


#: What a create's fields become in model.json, as an Ollama client names them.
_OLLAMA_NAMES = {
    "system_prompt": "SYSTEM (system)", "ollama": "TEMPLATE/the model's Ollama name",
    "license": "LICENSE (license)", "stop": "PARAMETER stop",
}  # fmt: skip


def _check_jan_patch(patch: dict[str, Any]) -> None:
    """Refuse what Jan's model.yml has no place for, naming it in Ollama's terms."""
    names = [_OLLAMA_NAMES.get(k, k) for k in patch.get("metadata", {})]
    names += [_OLLAMA_NAMES.get(k, f"PARAMETER {k}") for k in patch.get("model_parameters", {})
              if k not in JAN_SAMPLING_KEYS]  # fmt: skip
    if names:
        raise InvalidRequest(
            f"{', '.join(names)} has no place in Jan's model.yml, so a model created in a Jan "
            "data folder cannot keep it. Leave it out (sampling PARAMETERs like temperature "
            "are kept), or set it per chat instead.",
            param="system" if "system_prompt" in patch.get("metadata", {}) else None,
        )
    jan_patch(patch)


def changes_patch(changes: ModelChanges) -> dict[str, Any]:
    """`changes` as a model.json merge patch (objects merge; nothing else is touched)."""
    metadata: dict[str, Any] = {}
    ollama: dict[str, Any] = {}
    if changes.name:
        ollama["name"] = changes.name
    if changes.template is not None:
        ollama["template"] = changes.template
    if changes.ignored:
        ollama["ignored_params"] = changes.ignored
    if ollama:
        metadata["ollama"] = ollama
    if changes.system is not None:
        metadata["system_prompt"] = changes.system
    if changes.license is not None:
        metadata["license"] = changes.license
    patch: dict[str, Any] = {}
    if metadata:
        patch["metadata"] = metadata
    if changes.model_parameters:
        patch["model_parameters"] = changes.model_parameters
    if changes.engine_parameters:
        patch["engine_parameters"] = changes.engine_parameters
    return patch
