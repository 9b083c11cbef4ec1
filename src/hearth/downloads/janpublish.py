"""A finished pull moved into Jan's layout, in a Jan data folder.

A pull keeps its own machinery (a Hearth folder `models/<id>/` with model.json naming the
sources, `.part` files that resume, the `downloading` status) until every file is complete and
checked. Then, in a Jan data folder, the files move (a rename, same disk) to
`llamacpp/models/<jan id>/model.gguf` (+ `mmproj.gguf`), model.yml is written last
(`janwrite.place_model`), and the Hearth folder goes. A crash mid-pull so never leaves a
model.yml: at worst a `.part` in Hearth's folder, which the next pull resumes.

The id is Jan's: a Hugging Face file `<author>/<sanitized stem>` (the author read from the
`/<author>/<repo>/resolve/` URL), any other URL the sanitized stem (as Jan's import of a local
file), an Ollama pull the id Hearth gives the name (`smollm2-135m`: already Jan-like, and the
Ollama name keeps resolving to it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hearth.downloads.urls import FileSpec
from hearth.models import janwrite
from hearth.models.importer import is_projector
from hearth.models.janyml import MODEL_YML, ModelYmlError, read_model_yml
from hearth.models.store import ModelEntry, ModelStore

log = logging.getLogger(__name__)


def hf_author(url: str | None) -> str | None:
    """The repository owner of a Hugging Face file URL (`/<owner>/<repo>/resolve/<rev>/..`)."""
    if not url:
        return None
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) >= 4 and parts[2] == "resolve":
        return parts[0]
    return None


def jan_id_for(entry: ModelEntry, model: Path, ollama: bool) -> str:
    """Which id the pulled model gets among Jan's (see the module's docstring)."""
    if ollama:
        return entry.id
    assert entry.info is not None
    url = next((s.url for s in entry.info.sources if s.filename == model.name), None)
    author = hf_author(url)
    if author is not None:
        return janwrite.id_for_hf(author, model.name)
    return janwrite.id_for_file(model.name)


def already_there(store: ModelStore, specs: list[FileSpec], ollama_id: str | None) -> str | None:
    """The id of the model in Jan's layout this pull would make, when it is already there with
    the same bytes (model.yml's `model_sha256` is the file's): a second pull of one file is
    then "already complete", not a `-2` copy. None otherwise."""
    if store.jan is None:
        return None
    first = next((s for s in specs if not is_projector(Path(s.filename), None)), None)
    if first is None or not first.sha256:
        return None
    author = hf_author(first.url)
    if ollama_id is not None:
        wanted = ollama_id
    elif author is not None:
        wanted = janwrite.id_for_hf(author, first.filename)
    else:
        wanted = janwrite.id_for_file(first.filename)
    yml = store.jan.models_dir / wanted / MODEL_YML
    try:
        held = read_model_yml(yml).get("model_sha256")
    except (ModelYmlError, ValueError):
        return None
    return wanted if held == first.sha256 else None


def publish(
    store: ModelStore,
    model_id: str,
    *,
    jan_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str | None:
    """Move the complete pull `model_id` into Jan's layout; returns Jan's id (None when the
    home is no Jan folder or the pull is not complete). Split GGUFs stay Hearth's folder.
    `jan_id`: the id wanted (else Jan's rule); `extra`: more model.yml keys (Jan's names)."""
    if store.jan is None:
        return None
    entry = store.get_home(model_id)
    if entry is None or entry.info is None or entry.status != "ready" or entry.missing:
        return None
    models = [p for p in entry.files if not is_projector(p, None)]
    projectors = [p for p in entry.files if is_projector(p, None)]
    if len(models) != 1:
        log.info(
            "'%s' has %d model files: it stays in models/ (Jan keeps one)", model_id, len(models)
        )
        return None
    sources = {s.filename: s for s in entry.info.sources}
    known = [
        janwrite.Known(sources[p.name].sha256, sources[p.name].size) if p.name in sources else None
        for p in [models[0], *projectors[:1]]
    ]
    ollama = isinstance(entry.info.metadata, dict) and "ollama" in entry.info.metadata
    sampling = {  # what Jan's model.yml has keys for (Ollama's `params`, say)
        janwrite.SAMPLING_TO_JAN[k]: v
        for k, v in entry.info.model_parameters.items()
        if k in janwrite.SAMPLING_TO_JAN
    }
    if ollama:
        _note_dropped(model_id, entry)
    jan_dir = store.jan.models_dir
    jan_id = janwrite.free_jan_id(jan_dir, jan_id or jan_id_for(entry, models[0], ollama))
    janwrite.place_model(
        jan_dir,
        jan_id,
        models[0],
        projectors[0] if projectors else None,
        mode="move",
        name_from=models[0].name,
        known=known,
        extra={**sampling, **(extra or {})},
    )
    store.remove_home_folder(entry)
    log.info("Pulled '%s' into Jan's models as '%s'.", model_id, jan_id)
    return jan_id


def _note_dropped(model_id: str, entry: ModelEntry) -> None:
    """Say (once, at info) what of an Ollama pull Jan's model.yml has no key for."""
    assert entry.info is not None
    meta = entry.info.metadata
    found = meta.get("ollama")
    ollama: dict[str, Any] = found if isinstance(found, dict) else {}
    dropped = [
        label
        for label, present in (
            ("system prompt", meta.get("system_prompt")),
            ("template", ollama.get("template")),
            ("stop", entry.info.model_parameters.get("stop")),
        )
        if present
    ]
    if dropped:
        log.info(
            "'%s': Jan's model.yml has no place for its Ollama %s; not kept in Jan's layout.",
            model_id,
            ", ".join(dropped),
        )
