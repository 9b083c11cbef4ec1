"""What one model's files say about it: architecture, sizes, context, chat template.

model.json's `metadata` is filled at import from the GGUF header; a model.json written by hand
may lack it, so what is missing is read from the header itself (bounded reader, `gguf.py`),
once per file version (the cache key changes when the file does). The Ollama face's details,
the model record's `capabilities` and the request checks (tools, images, `dimensions`) all
read the same facts.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import HearthError
from hearth.models.capabilities import capabilities, effective_template
from hearth.models.gguf import GGUFInfo, read_gguf_header
from hearth.models.store import ModelEntry

_HIDDEN_KEYS = ("tokenizer.chat_template",)  # shown as a template, not as metadata


@dataclass
class Facts:
    """The facts about one model's weights file that the faces and request checks need."""

    architecture: str | None = None
    parameter_count: int | None = None
    size_label: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: str | None = None
    header: dict[str, Any] = field(default_factory=dict)


def facts(entry: ModelEntry, *, header: bool = False) -> Facts:
    """The model's facts from its metadata, reading the GGUF header for what is missing (or
    always, with `header`, for the full key/value list)."""
    meta = entry.info.metadata if entry.info is not None else {}
    out = Facts(
        architecture=_str(meta.get("architecture")),
        parameter_count=_int(meta.get("parameter_count")),
        size_label=_str(meta.get("size_label")),
        quantization=_str(meta.get("quantization")),
        context_length=_int(meta.get("context_length")),
        embedding_length=_int(meta.get("embedding_length")),
        chat_template=_str(meta.get("chat_template")),
    )
    path = entry.model_path
    complete = out.architecture and out.quantization and out.parameter_count
    if path is None or (complete and not header):
        return out
    info = _header(str(path))
    if info is None:
        return out
    out.architecture = out.architecture or info.architecture
    out.parameter_count = out.parameter_count or info.parameter_count
    out.size_label = out.size_label or info.size_label
    out.quantization = out.quantization or info.quantization
    out.context_length = out.context_length or info.context_length
    out.embedding_length = out.embedding_length or info.embedding_length
    out.chat_template = out.chat_template or info.chat_template
    out.header = {k: v for k, v in info.metadata.items() if k not in _HIDDEN_KEYS}
    return out


def model_capabilities(entry: ModelEntry, fact: Facts | None = None) -> list[str]:
    """What the model can do (see `capabilities.py`), from its facts and engine parameters."""
    fact = fact or facts(entry)
    params = entry.info.engine_parameters if entry.info is not None else {}
    return capabilities(
        architecture=fact.architecture,
        chat_template=effective_template(fact.chat_template, params),
        engine_parameters=params,
    )


def _header(path: str) -> GGUFInfo | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _cached_header(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _cached_header(path: str, mtime_ns: int, size: int) -> GGUFInfo | None:
    """One read per file version (the key changes when the file does)."""
    try:
        return read_gguf_header(path)
    except (HearthError, OSError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
