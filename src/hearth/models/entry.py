"""One model as the store hands it out: `ModelEntry`, a folder read and resolved.

Its own module so that both the store (models/store.py: Hearth's model.json folders) and
Jan's shelf (models/jan_store.py: Jan's model.yml folders) build entries without importing
each other.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.models.capabilities import record_capabilities, record_template, tool_format
from hearth.models.facts import Facts, facts, model_capabilities, model_tool_format
from hearth.models.schema import ModelInfo

MODEL_SUFFIXES = (".gguf", ".bin", ".ggml")


@dataclass
class ModelEntry:
    """One folder under models/, read and resolved. `info` is None when the folder is invalid."""

    folder: Path
    id: str
    info: ModelInfo | None
    raw: dict[str, Any] | None
    status: str
    error: str | None = None
    size: int = 0
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    partial: list[Path] = field(default_factory=list)
    external: list[Path] = field(default_factory=list)
    #: A model Jan keeps (`llamacpp/models/<id>/model.yml`, `hearth.models.janyml`): that file.
    #: None for a Hearth folder (`models/<id>/model.json`). Writes go back in Jan's format.
    jan_file: Path | None = None
    _json_cache: dict[tuple[str, str | None], str] = field(default_factory=dict, repr=False)

    @property
    def model_path(self) -> Path | None:
        """The file the engine loads: the first present, non-projector GGUF (part 1 of a split);
        for a model Jan keeps, its `model_path` (checked a GGUF file, whatever its name)."""
        if self.jan_file is not None:
            return self.files[0] if self.files else None
        for path in self.files:
            if path.suffix.lower() in MODEL_SUFFIXES and "mmproj" not in path.name.lower():
                return path
        return None

    def to_api(self, status: str | None = None, error: str | None = None) -> dict[str, Any]:
        """OpenAI's model object (id, object, created, owned_by) plus the rest of model.json."""
        status = status or self.status
        error = error if error is not None else self.error
        if self.info is None:
            body: dict[str, Any] = {
                "id": self.id,
                "object": "model",
                "created": int(_mtime(self.folder)),
                "owned_by": "you",
                "name": self.folder.name,
            }
        else:
            body = self.info.model_dump(mode="json", exclude_none=False)
            self._show_template_path(body)
            fact = self._header_facts()
            if fact is not None:
                body["metadata"] = _with_facts(body.get("metadata"), fact)
            body["capabilities"] = caps = self._capabilities(fact)
            shown = self._tool_format(caps, fact)
            if shown is not None:
                body["tool_format"] = shown
        body["size"] = self.size
        body["status"] = status
        if error:
            body["error"] = error
        return body

    def _show_template_path(self, body: dict[str, Any]) -> None:
        """A model.yml whose `chat_template` names a file shows that path, never the file's
        text (the engine gets the text; an answer only says where it comes from)."""
        named = self.raw.get("chat_template") if self.jan_file is not None and self.raw else None
        params = body.get("engine_parameters")
        if (
            isinstance(named, str)
            and "{" not in named
            and "\n" not in named
            and isinstance(params, dict)
            and "chat_template" in params
        ):
            params["chat_template"] = named

    def _header_facts(self) -> Facts | None:
        """The GGUF header's facts for a local model whose record lacks them (a model.json
        written by hand, a model Jan keeps: only an import records them); None when the record
        has them or the model is remote. Reads the header once per file version (`facts.py`):
        callers are threads (listing's worker, sync routes, the CLI), never the event loop."""
        assert self.info is not None
        meta = self.info.metadata
        if self.info.is_remote or (isinstance(meta, dict) and meta.get("architecture")):
            return None
        return facts(self)

    def _capabilities(self, fact: Facts | None) -> list[str]:
        """From what import recorded of the GGUF, else from the header's facts."""
        assert self.info is not None
        if fact is None:
            return record_capabilities(self.info)
        return model_capabilities(self, fact)

    def _tool_format(self, caps: list[str], fact: Facts | None) -> str | None:
        """How the model is shown tools: "template", "hearth" (`capabilities.tool_format`),
        or "upstream" for a remote model (its server's own tool calling)."""
        assert self.info is not None
        meta = self.info.metadata
        if self.info.is_remote:
            return "upstream"
        if fact is None and isinstance(meta, dict) and meta.get("architecture"):
            return tool_format(caps, record_template(self.info))
        return model_tool_format(self, fact)

    def to_api_json(self, status: str | None = None, error: str | None = None) -> str:
        """`to_api` as compact JSON, memoized: listing 1,000 unchanged models re-encodes none."""
        key = (status or self.status, error if error is not None else self.error)
        text = self._json_cache.get(key)
        if text is None:
            text = json.dumps(self.to_api(*key), ensure_ascii=False, separators=(",", ":"))
            if len(self._json_cache) > 8:
                self._json_cache.clear()
            self._json_cache[key] = text
        return text


#: The header's facts a record shows, under the names import records them (`importer.py`).
_FACT_KEYS = (
    "architecture", "parameter_count", "size_label", "quantization", "context_length",
    "embedding_length", "chat_template",
)  # fmt: skip


def _with_facts(meta: Any, fact: Facts) -> dict[str, Any]:
    """The record's metadata with the header's facts added where it has none of its own (what
    the record says wins; an unreadable or invalid file adds nothing)."""
    out = dict(meta) if isinstance(meta, dict) else {}
    for key in _FACT_KEYS:
        value = getattr(fact, key)
        if value is not None and out.get(key) in (None, ""):
            out[key] = value
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
