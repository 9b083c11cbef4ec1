"""What a face shows about a model that only its files know: its facts (model.json's metadata,
else the GGUF header, read once per file version: `models/facts.py`), a stable digest of its
content, when its model.json last changed (and from those, what it can do).

Every function here reads files: `card` runs in a worker thread (a list view's fragment, or
through `card_off_loop` / `running_cards`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.models.facts import Facts, facts, model_capabilities, model_tool_format
from hearth.models.store import ModelEntry

if TYPE_CHECKING:
    from hearth.services.core import Services


@dataclass(frozen=True, slots=True)
class ModelCard:
    """One model as its files describe it (see the module docstring)."""

    entry: ModelEntry
    facts: Facts
    digest: str  # 64 hex digits
    changed_at: float  # model.json's time (else the model's creation), unix seconds

    def capabilities(self) -> list[str]:
        """What the model can do, from its facts and engine parameters (reads nothing)."""
        return model_capabilities(self.entry, self.facts)

    def tool_format(self) -> str | None:
        """How the model is shown tools: "template" or "hearth" (reads nothing)."""
        return model_tool_format(self.entry, self.facts)


def card(entry: ModelEntry, *, header: bool = False) -> ModelCard:
    """The model's card; `header`: with the GGUF header's metadata (/api/show). Reads files."""
    fact = facts(entry, header=header)
    return ModelCard(entry, fact, digest(entry), changed_at(entry))


async def card_off_loop(entry: ModelEntry, *, header: bool = False) -> ModelCard:
    """`card`, read in a worker thread."""
    return await asyncio.to_thread(card, entry, header=header)


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


def changed_at(entry: ModelEntry) -> float:
    """When model.json last changed (else when the model was made), in unix seconds."""
    try:
        return (entry.folder / "model.json").stat().st_mtime
    except OSError:
        return entry.info.created if entry.info is not None else 0


def _running_cards(
    services: Services, running: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], ModelCard]]:
    found = []
    for model in running:
        try:
            entry = services.store.get(model["id"])
        except Exception:  # deleted meanwhile (or broken): it is on its way out
            continue
        found.append((model, card(entry)))
    return found


async def running_cards(services: Services) -> list[tuple[dict[str, Any], ModelCard]]:
    """The loaded models (the engines' `running` list, most recently used first), each with
    its card; their folders and headers are read in a worker thread."""
    return await asyncio.to_thread(_running_cards, services, services.running())
