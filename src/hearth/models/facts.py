"""What one model's files say about it: architecture, sizes, context, chat template.

model.json's `metadata` is filled at import from the GGUF header; a model.json written by hand
may lack it, so what is missing is read from the header itself (bounded reader, `gguf.py`),
once per file version. The Ollama face's details, the model record's `capabilities` and the
request checks (tools, images, `dimensions`) all read the same facts.

Reading a header is file I/O (a real one takes milliseconds): `facts` is for threads and the
CLI; a coroutine awaits `facts_off_loop`, and model lists compute their bodies in a worker
thread (`services/listing.py`), so no route reads a header on the event loop.

Headers are cached by file identity (device, inode, size, mtime): hard links of one file share
one read, and a file replaced or rewritten is read again. The cache has no small cap (a list of
5,000 models must not re-read them all on every call, as a 64-entry LRU did); it holds one entry
per model file, because a path's old version is dropped when a new one is read and
`HEADERS.keep_only` drops the files the store no longer lists after every changed list.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hearth.core.errors import HearthError
from hearth.models.capabilities import capabilities, effective_template, tool_format
from hearth.models.gguf import GGUFInfo, read_gguf_header
from hearth.models.schema import ModelInfo

_HIDDEN_KEYS = ("tokenizer.chat_template",)  # shown as a template, not as metadata


class ModelFiles(Protocol):
    """What facts are read from: a model's model.json and its weights (a store's ModelEntry).
    A protocol, so the store can ask for facts without the two modules importing each other."""

    @property
    def info(self) -> ModelInfo | None: ...

    @property
    def model_path(self) -> Path | None: ...


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


def facts(entry: ModelFiles, *, header: bool = False) -> Facts:
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


async def facts_off_loop(entry: ModelFiles, *, header: bool = False) -> Facts:
    """`facts` for a coroutine: in a worker thread, since it may read the GGUF header."""
    return await asyncio.to_thread(facts, entry, header=header)


def model_capabilities(entry: ModelFiles, fact: Facts | None = None) -> list[str]:
    """What the model can do (see `capabilities.py`), from its facts and engine parameters."""
    fact = fact or facts(entry)
    params = entry.info.engine_parameters if entry.info is not None else {}
    return capabilities(
        architecture=fact.architecture,
        chat_template=effective_template(fact.chat_template, params),
        engine_parameters=params,
    )


def model_tool_format(entry: ModelFiles, fact: Facts | None = None) -> str | None:
    """How the model is shown tools ("template", "hearth"; see `capabilities.tool_format`)."""
    fact = fact or facts(entry)
    params = entry.info.engine_parameters if entry.info is not None else {}
    template = effective_template(fact.chat_template, params)
    return tool_format(model_capabilities(entry, fact), template)


#: A file's identity: (device, inode, size, mtime in ns); any change is a new file version.
Identity = tuple[int, int, int, int]


class HeaderCache:
    """GGUF headers by file identity, shared by every thread of the process.

    `_paths` maps each path read to the identity it had then: a new version of the file
    replaces the path's entry (the old header goes unless another path, a hard link, still has
    it), and `keep_only` forgets paths no model lists any more.
    """

    def __init__(self) -> None:
        self._headers: dict[Identity, GGUFInfo | None] = {}
        self._paths: dict[str, Identity] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._headers)

    def get(self, path: str) -> GGUFInfo | None:
        """The header of the file at `path` now (None: unreadable or not a GGUF). Reads the
        file unless this version of it was read before: call it off the event loop."""
        try:
            st = os.stat(path)
        except OSError:
            self.forget(path)
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._headers:
            known = self._headers[key]
            if self._paths.get(path) != key:
                self._remember(path, key, known)
            return known
        try:
            info: GGUFInfo | None = read_gguf_header(path)
        except (HearthError, OSError, ValueError):
            info = None
        self._remember(path, key, info)
        return info

    def _remember(self, path: str, key: Identity, info: GGUFInfo | None) -> None:
        with self._lock:
            old = self._paths.get(path)
            self._paths[path] = key
            self._headers[key] = info
            if old is not None and old != key and old not in self._paths.values():
                self._headers.pop(old, None)

    def forget(self, path: str) -> None:
        """Drop what was read from `path` (the file is gone)."""
        with self._lock:
            old = self._paths.pop(path, None)
            if old is not None and old not in self._paths.values():
                self._headers.pop(old, None)

    def keep_only(self, paths: set[str]) -> None:
        """Forget every path not in `paths` (the model files a list just found), and headers
        no remembered path has."""
        with self._lock:
            if paths.issuperset(self._paths):
                return
            self._paths = {p: k for p, k in self._paths.items() if p in paths}
            live = set(self._paths.values())
            self._headers = {k: v for k, v in self._headers.items() if k in live}


#: The process's header cache (headers describe files, which every store of a process shares).
HEADERS = HeaderCache()


def _header(path: str) -> GGUFInfo | None:
    return HEADERS.get(path)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
