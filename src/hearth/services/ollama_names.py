"""Which model a name means, in Ollama's naming as well as Hearth's: the name resolution behind
the Ollama face (/api/*), /api/pull's "is it here already", and the ids /api/copy and /api/create
give new models.

Hearth id `x` is Ollama's `x:latest` (a Jan id too: `unsloth/Qwen3-4B-Q4_K_M:latest`); a
model pulled by an Ollama name keeps that name (model.json `metadata.ollama.name`, e.g.
`qwen2.5:0.5b` for the id `qwen2.5-0.5b`). A name resolves, in order, to: the id itself; the
id without `:latest`; the id the Ollama name maps to (`hearth.models.names`: `qwen2.5:0.5b` ->
`qwen2.5-0.5b`); a model whose recorded Ollama name it is (`hf.co/OWNER/REPO:QUANT` after an
/api/pull).

In a Jan data folder the recorded name cannot go into the model (model.yml has no key for it,
and Hearth adds none to Jan's files): the name -> id map is kept in Hearth's own folder instead
(`<state_dir>/ollama-names.json`, written atomically, bounded, read as a stranger's file).

`find` never reads a file on the event loop: an id is looked up in a worker thread (a folder
read), recorded names in the shared model list (`listing.py`, scanned in steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.core import atomic
from hearth.core.errors import HearthError, InvalidModelId, ModelNotFound
from hearth.core.strangefile import read_regular
from hearth.models.ids import is_any_id, is_valid_id
from hearth.models.names import ollama_model_id, parse_ollama_ref
from hearth.models.store import ModelEntry, ModelStore

if TYPE_CHECKING:
    from hearth.services.core import Services

LATEST = ":latest"
NAMES_FILE = "ollama-names.json"
MAX_NAMES = 1000  # the oldest are forgotten past this
MAX_NAMES_BYTES = 1 << 20
_names_lock = threading.Lock()
log = logging.getLogger(__name__)


def ollama_name(entry: ModelEntry) -> str:
    """The name Ollama's clients see: the recorded Ollama name, else `<id>:latest`."""
    recorded = recorded_name(entry)
    if recorded:
        return recorded if ":" in recorded.rsplit("/", 1)[-1] else recorded + LATEST
    return entry.id + LATEST


def recorded_name(entry: ModelEntry) -> str | None:
    """The Ollama name model.json records for this model, if it is still this model's (a copy
    keeps its source's metadata, and its own id is its name)."""
    meta = entry.info.metadata if entry.info is not None else {}
    ollama = meta.get("ollama") if isinstance(meta, dict) else None
    name = ollama.get("name") if isinstance(ollama, dict) else None
    if not isinstance(name, str) or not name:
        return None
    ref = parse_ollama_ref(name)
    if ref is not None and ollama_model_id(ref) != entry.id:
        return None
    return name


def candidates(name: str) -> list[str]:
    """Ids `name` may stand for, most literal first."""
    found = [name]
    if name.lower().endswith(LATEST):
        found.append(name[: -len(LATEST)])
    with contextlib.suppress(HearthError):
        found.append(ollama_model_id(name))
    return [c for c in dict.fromkeys(found) if is_any_id(c)]


def new_id(name: str) -> str:
    """The id a new model (/api/copy, /api/create) gets for an Ollama name."""
    if name.lower().endswith(LATEST):
        name = name[: -len(LATEST)]
    if is_valid_id(name) and ":" not in name:
        return name
    return ollama_model_id(name)


async def find(services: Services, name: str) -> ModelEntry | None:
    """The model a client's name means, or None: an id in a worker thread (a folder read),
    then the recorded names of the shared list's entries."""
    entry = await asyncio.to_thread(_by_id_or_jan_name, services, name)
    if entry is not None:
        return entry
    ids = set(candidates(name))
    wanted = {name.lower(), (name + LATEST).lower()}
    for entry in await services.lists.entries():
        if entry.info is None:
            continue
        recorded = recorded_name(entry)
        if entry.id in ids or (recorded and recorded.lower() in wanted):
            return entry
    return None


async def record_name(services: Services, model_id: str, name: str) -> None:
    """Remember the name a client pulled by when it is no Ollama library name (hf.co/...), so
    `find` finds the model by it (model.json is written in a worker thread)."""
    if parse_ollama_ref(name) is not None or name == model_id:
        return
    await asyncio.to_thread(_record, services, model_id, name)


def _record(services: Services, model_id: str, name: str) -> None:
    if services.store.jan is not None and services.store.jan.exists(model_id):
        _record_jan_name(services.settings.state_dir / NAMES_FILE, model_id, name)
        return
    with contextlib.suppress(HearthError):  # the model works under its id regardless
        services.update_model(model_id, {"metadata": {"ollama": {"name": name}}})


def _by_id_or_jan_name(services: Services, name: str) -> ModelEntry | None:
    """`by_id`, then (a Jan folder) the id recorded for the name in Hearth's own folder."""
    entry = by_id(services.store, name)
    if entry is not None or services.store.jan is None:
        return entry
    names = read_jan_names(services.settings.state_dir / NAMES_FILE)
    model_id = names.get(name.lower()) or names.get((name + LATEST).lower())
    return by_id(services.store, model_id) if model_id else None


def read_jan_names(path: Path) -> dict[str, str]:
    """The name -> id map (lower-case names); {} when absent, and a bad file is logged and
    ignored (a FIFO, too large, not a JSON object of strings)."""
    try:
        raw = read_regular(path, MAX_NAMES_BYTES)
        if len(raw) > MAX_NAMES_BYTES:
            raise ValueError("larger than 1 MiB")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, str(exc)[:200])
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring %s: not a JSON object of names", path)
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _record_jan_name(path: Path, model_id: str, name: str) -> None:
    with _names_lock, contextlib.suppress(OSError):  # the model works under its id regardless
        names = read_jan_names(path)
        names.pop(name.lower(), None)
        names[name.lower()] = model_id  # newest last: the oldest go first past MAX_NAMES
        kept = dict(list(names.items())[-MAX_NAMES:])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, kept, indent=1)


def by_id(store: ModelStore, name: str) -> ModelEntry | None:
    """The model whose folder is one of the ids `name` may stand for (a renamed model, whose
    id is not its folder's name, is found in the list instead). Reads folders: a worker
    thread."""
    for model_id in candidates(name):
        jan = store.jan is not None and store.jan.exists(model_id)  # Jan's ids may nest
        if not jan and not (is_valid_id(model_id) and (store.models_dir / model_id).exists()):
            continue
        with contextlib.suppress(InvalidModelId, ModelNotFound):
            return store.get(model_id)
    return None
