"""Hearth's models as Ollama describes models: names, details, /api/tags, /api/show, /api/ps.

Names: Hearth id `x` is Ollama's `x:latest`; a model pulled by an Ollama name keeps that name
(model.json `metadata.ollama.name`, e.g. `qwen2.5:0.5b` for the id `qwen2.5-0.5b`). A name a
client sends resolves, in order, to: the id itself; the id without `:latest`; the id the
Ollama name maps to (`hearth.models.names`: `qwen2.5:0.5b` -> `qwen2.5-0.5b`); a model whose
recorded Ollama name it is (`hf.co/OWNER/REPO:QUANT` after an /api/pull).

Details come from model.json's `metadata` (filled at import from the GGUF header) and, where
it lacks them (a model.json written by hand), from the header itself, read once per file
version (bounded reader, `models/gguf.py`) and cached (`models/facts.py`).

Nothing here reads a file on the event loop: /api/tags is a view of the shared model list
(`services/listing.py`: the scan in steps, new entries' JSON made in a worker thread), and
`resolve` looks a name up in a worker thread, or in that shared scan for recorded names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

from hearth.errors import HearthError, InvalidModelId, ModelNotFound, NotFound
from hearth.models.facts import Facts, facts
from hearth.models.ids import is_valid_id
from hearth.models.names import ollama_model_id, parse_ollama_ref
from hearth.models.store import ModelEntry
from hearth.server.ollama.translate import rfc3339
from hearth.services import Services
from hearth.services.listing import ListView, Status

LATEST = ":latest"
#: model_parameters -> Ollama's PARAMETER names, for /api/show's `parameters` text.
PARAMETER_NAMES = {"max_tokens": "num_predict"}


def model_missing(name: str) -> NotFound:
    """Ollama's own words for an unknown model, plus how to fix it in Hearth."""
    return NotFound(
        f'model "{name[:200]}" not found, try pulling it first (POST /api/pull or '
        f"`hearth pull {name[:200]}`; GET /api/tags lists the models here)",
        param="model",
        code="model_not_found",
    )


# ---- names --------------------------------------------------------------------------------


def ollama_name(entry: ModelEntry) -> str:
    """The name Ollama's clients see: the recorded Ollama name, else `<id>:latest`."""
    recorded = _recorded_name(entry)
    if recorded:
        return recorded if ":" in recorded.rsplit("/", 1)[-1] else recorded + LATEST
    return entry.id + LATEST


def _recorded_name(entry: ModelEntry) -> str | None:
    meta = entry.info.metadata if entry.info is not None else {}
    ollama = meta.get("ollama") if isinstance(meta, dict) else None
    name = ollama.get("name") if isinstance(ollama, dict) else None
    if not isinstance(name, str) or not name:
        return None
    ref = parse_ollama_ref(name)
    if ref is not None and ollama_model_id(ref) != entry.id:
        return None  # a copy keeps its source's metadata: its own id is its name
    return name


def candidates(name: str) -> list[str]:
    """Ids `name` may stand for, most literal first."""
    found = [name]
    if name.lower().endswith(LATEST):
        found.append(name[: -len(LATEST)])
    with contextlib.suppress(HearthError):
        found.append(ollama_model_id(name))
    return [c for c in dict.fromkeys(found) if is_valid_id(c)]


async def resolve(services: Services, name: str) -> ModelEntry:
    """The model a client's name means, or Ollama's 404 ("model ... not found"): an id in a
    worker thread (a folder read), then the recorded names of the shared list's entries."""
    entry = await asyncio.to_thread(_by_id, services, name)
    if entry is not None:
        return entry
    ids = set(candidates(name))
    wanted = {name.lower(), (name + LATEST).lower()}
    for entry in await services.lists.entries():
        if entry.info is None:
            continue
        recorded = _recorded_name(entry)
        if entry.id in ids or (recorded and recorded.lower() in wanted):
            return entry
    raise model_missing(name)


def _by_id(services: Services, name: str) -> ModelEntry | None:
    """The model whose folder is one of the ids `name` may stand for (a renamed model, whose
    id is not its folder's name, is found in the list instead)."""
    store = services.store
    for model_id in candidates(name):
        if not (store.models_dir / model_id).exists():
            continue
        with contextlib.suppress(InvalidModelId, ModelNotFound):
            return store.get(model_id)
    return None


def new_id(name: str) -> str:
    """The id a new model (/api/copy, /api/create) gets for an Ollama name."""
    if name.lower().endswith(LATEST):
        name = name[: -len(LATEST)]
    if is_valid_id(name) and ":" not in name:
        return name
    return ollama_model_id(name)


# ---- facts and details --------------------------------------------------------------------


def parameter_size(fact: Facts) -> str:
    """ "135M", "7.2B": the GGUF's size label, else the count written as Ollama writes it."""
    if fact.size_label:
        return fact.size_label
    count = fact.parameter_count or 0
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return (
                f"{count / scale:.1f}{unit}"
                if count < scale * 100
                else f"{count / scale:.0f}{unit}"
            )
    return str(count)


def details(entry: ModelEntry, fact: Facts) -> dict[str, Any]:
    family = fact.architecture or ""
    remote = entry.info is not None and entry.info.is_remote
    return {
        "parent_model": "",
        "format": "api" if remote else "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": "" if remote else parameter_size(fact),
        "quantization_level": fact.quantization or "",
    }


def digest(entry: ModelEntry) -> str:
    """A stable 64-hex id of the model's content: its files' recorded sha256s when known, else
    their names, sizes and times (never reads the weights)."""
    parts = [entry.id]
    for path in entry.files:
        try:
            st = path.stat()
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(path.name)
    if entry.info is not None:
        parts += [s.sha256 or "" for s in entry.info.sources]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def modified_at(entry: ModelEntry) -> str:
    try:
        return rfc3339((entry.folder / "model.json").stat().st_mtime)
    except OSError:
        return rfc3339(entry.info.created if entry.info is not None else 0)


def listed(entry: ModelEntry) -> bool:
    """/api/tags lists models that can answer: complete files, or a remote engine."""
    return entry.info is not None and entry.status == "ready"


def _tag_fragment(entry: ModelEntry, status: Status) -> str | None:
    """One model's /api/tags JSON, or None when it is not listed (a worker thread calls it:
    its details may need the GGUF header)."""
    if not listed(entry):
        return None
    return json.dumps(tag(entry), ensure_ascii=False, separators=(",", ":"))


#: GET /api/tags: the models that can answer, as Ollama lists them.
TAGS_LIST = ListView("ollama-tags", _tag_fragment, '{"models":[', "]}")


def tag(entry: ModelEntry) -> dict[str, Any]:
    """One model as /api/tags lists it."""
    name = ollama_name(entry)
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at(entry),
        "size": entry.size,
        "digest": digest(entry),
        "details": details(entry, facts(entry)),
    }
