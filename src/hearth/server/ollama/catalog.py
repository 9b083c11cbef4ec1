"""Hearth's models as Ollama describes models: details, /api/tags's entries, Ollama's 404.

Names resolve in the service layer (`services/ollama_names.py`: `x` is `x:latest`, a pulled
model keeps its Ollama name); what only a model's files know (GGUF facts, a content digest,
model.json's time) is read there too (`services/model_info.py`, a `ModelCard`). This module
only writes them in Ollama's words.

Nothing here reads a file on the event loop: /api/tags is a view of the shared model list
(`services/listing.py`: the scan in steps, new entries' JSON made in a worker thread, where
`_tag_fragment` reads the entry's card), and `resolve` looks a name up through the services.
"""

from __future__ import annotations

import json
from typing import Any

from hearth.core.errors import NotFound
from hearth.models.facts import Facts
from hearth.models.store import ModelEntry
from hearth.server.ollama.translate import rfc3339
from hearth.services import Services, model_info, ollama_names
from hearth.services.listing import ListView, Status
from hearth.services.model_info import ModelCard

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


async def resolve(services: Services, name: str) -> ModelEntry:
    """The model a client's name means, or Ollama's 404 ("model ... not found")."""
    entry = await ollama_names.find(services, name)
    if entry is None:
        raise model_missing(name)
    return entry


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


def modified_at(card: ModelCard) -> str:
    return rfc3339(card.changed_at)


def listed(entry: ModelEntry) -> bool:
    """/api/tags lists models that can answer: complete files, or a remote engine."""
    return entry.info is not None and entry.status == "ready"


def _tag_fragment(entry: ModelEntry, status: Status) -> str | None:
    """One model's /api/tags JSON, or None when it is not listed (a worker thread calls it:
    its card may need the GGUF header)."""
    if not listed(entry):
        return None
    return json.dumps(tag(model_info.card(entry)), ensure_ascii=False, separators=(",", ":"))


#: GET /api/tags: the models that can answer, as Ollama lists them.
TAGS_LIST = ListView("ollama-tags", _tag_fragment, '{"models":[', "]}")


def tag(card: ModelCard) -> dict[str, Any]:
    """One model as /api/tags lists it."""
    entry = card.entry
    name = ollama_names.ollama_name(entry)
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at(card),
        "size": entry.size,
        "digest": card.digest,
        "details": details(entry, card.facts),
    }
