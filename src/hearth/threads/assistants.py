"""The assistant store: `<home>/assistants/<id>/assistant.json`, as Jan keeps them.

Guarantees:
- An id is a folder name checked against the id grammar (`hearth.models.ids`) before any path
  is built; a folder or file that is a link leading out of the assistants folder is never
  followed (403), and a file that is not a regular file, or is larger than
  `MAX_ASSISTANT_BYTES`, is refused without being read.
- One broken assistant.json never hides the others: the list holds it with an `error`.
- Writes are atomic (`core/atomic.py`), pretty JSON as Jan writes it, keeping every key the
  file held (an edit changes only the fields it names). A delete removes only assistant.json,
  as Jan does; the folder stays.
- Nothing here creates Jan's default assistant: an empty folder lists nothing.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core import atomic
from hearth.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hearth.core.keyedlocks import KeyedLocks
from hearth.models.ids import is_valid_id
from hearth.models.links import is_inside
from hearth.threads import jsonl
from hearth.threads.ids import refuse_id

ASSISTANT_JSON = "assistant.json"
#: Jan's assistant.json is a few kilobytes; a larger file is refused, never read.
MAX_ASSISTANT_BYTES = 1024 * 1024


@dataclass
class StoredAssistant:
    """One assistant folder as read: its object, or the reason it could not be read."""

    id: str
    raw: dict[str, Any]
    mtime: float
    error: str | None = None


def validate_assistant_id(assistant_id: str) -> str:
    """The id unchanged, or InvalidRequest (400) before it touches the disk."""
    if is_valid_id(assistant_id):
        return assistant_id
    raise refuse_id("assistant", assistant_id, "assistant_id")


def assistant_not_found(assistant_id: str) -> NotFound:
    return NotFound(
        f"The assistant '{assistant_id}' does not exist. List assistants with GET "
        "/v1/assistants; create one with POST /v1/assistants.",
        param="assistant_id",
        code="assistant_not_found",
    )


class AssistantStore:
    """Assistant folders under `folder` (created on the first write). Thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks = KeyedLocks()

    # ---- paths ------------------------------------------------------------------------------

    def _path(self, assistant_id: str) -> Path:
        """assistant.json of a valid id, refusing links that lead out of the assistants folder
        (the assistant's folder, or its file). It may not exist."""
        sub = self.folder / validate_assistant_id(assistant_id)
        path = sub / ASSISTANT_JSON
        root = os.path.realpath(self.folder)
        for candidate in (sub, path):
            if candidate.is_symlink():
                real = os.path.realpath(candidate)
                if real == root or not is_inside(real, root):
                    raise Forbidden(
                        f"assistants/{assistant_id} is a link to a place outside the "
                        "assistants folder, which Hearth does not follow. Move the assistant's "
                        "folder into assistants/ instead.",
                        param="assistant_id",
                    )
        return path

    # ---- reading ----------------------------------------------------------------------------

    def each(self) -> list[StoredAssistant]:
        """Every folder holding an assistant.json (or a link to one); a broken one is listed
        with its `error`, never dropped and never fatal to the list."""
        try:
            names = sorted(d.name for d in os.scandir(self.folder) if d.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            if not is_valid_id(name):  # hidden folders, names no request could reach
                continue
            try:
                found.append(self.read(name))
            except NotFound:
                continue
            except (Forbidden, InvalidRequest, OSError) as exc:
                message = exc.message if isinstance(exc, Forbidden | InvalidRequest) else str(exc)
                found.append(StoredAssistant(name, {}, 0.0, message))
        return found

    def read(self, assistant_id: str) -> StoredAssistant:
        """The stored assistant; an unparsable file is answered with its `error`."""
        path = self._path(assistant_id)
        data, mtime = _read_bounded(path, assistant_id)
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            return StoredAssistant(assistant_id, {}, mtime, f"assistant.json is not JSON ({exc})")
        if not isinstance(raw, dict):
            return StoredAssistant(assistant_id, {}, mtime, "assistant.json is not a JSON object")
        return StoredAssistant(assistant_id, raw, mtime)

    def exists(self, assistant_id: str) -> bool:
        return os.path.lexists(self._path(assistant_id))

    # ---- writing ----------------------------------------------------------------------------

    def create(self, assistant_id: str, raw: dict[str, Any]) -> StoredAssistant:
        """Write a new assistant; 409 if the id is taken."""
        path = self._path(assistant_id)
        with self._locks.hold(assistant_id):
            if os.path.lexists(path):
                raise Conflict(
                    f"An assistant '{assistant_id}' exists already. Change it with POST "
                    f"/v1/assistants/{assistant_id}, or choose another id.",
                    param="id",
                    code="assistant_exists",
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, raw)
        return self.read(assistant_id)

    def update(
        self, assistant_id: str, change: Callable[[dict[str, Any]], None]
    ) -> StoredAssistant:
        """Apply `change` to the stored object and write it back (unknown keys kept); a
        broken file is never rewritten (409: the user's to fix)."""
        with self._locks.hold(assistant_id):
            stored = self.read(assistant_id)
            if stored.error:
                raise Conflict(
                    f"assistants/{assistant_id}/assistant.json cannot be changed: "
                    f"{stored.error}. Fix or delete the file first.",
                    param="assistant_id",
                )
            raw = dict(stored.raw)
            change(raw)
            _write(self._path(assistant_id), raw)
        return self.read(assistant_id)

    def delete(self, assistant_id: str) -> None:
        """Remove assistant.json only, as Jan does (the folder and anything else in it stay)."""
        path = self._path(assistant_id)
        with self._locks.hold(assistant_id):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                raise assistant_not_found(assistant_id) from None


def _read_bounded(path: Path, assistant_id: str) -> tuple[bytes, float]:
    """The file's bytes and mtime: 404 if absent; a FIFO, device or huge file refused unread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        raise assistant_not_found(assistant_id) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidRequest(
                f"assistants/{assistant_id}/assistant.json is not a regular file; replace it "
                "with one.",
                param="assistant_id",
            )
        if st.st_size > MAX_ASSISTANT_BYTES:
            raise InvalidRequest(
                f"assistants/{assistant_id}/assistant.json is {st.st_size} bytes, more than "
                f"the {MAX_ASSISTANT_BYTES} an assistant may hold; shorten its instructions.",
                param="assistant_id",
                code="assistant_too_large",
            )
        return fh.read(MAX_ASSISTANT_BYTES + 1)[:MAX_ASSISTANT_BYTES], st.st_mtime


def _write(path: Path, raw: dict[str, Any]) -> None:
    """Pretty JSON as Jan writes it (two spaces), atomically."""
    atomic.write_bytes(path, jsonl.encode(raw, indent=2), storage_error=True)
