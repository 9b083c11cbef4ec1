"""The model store: folders under models/ <-> model records.

Everything that changes a model on disk goes through here. Guarantees:
- model.json is written atomically (temp file in the same folder, fsync, rename, fsync dir)
  and writes to one model are serialized, across threads and processes (flock on the folder).
- A bad folder never breaks the list: it is listed with status "invalid" and an error naming
  the file, the field and the fix.
- No stale cache: each list re-stats every folder and its model.json, and re-reads only what
  changed (keyed by mtime, size, inode). That keeps 1,000 models in a few milliseconds.
- Delete removes only what lies inside the model's folder (never a linked original), and first
  renames the folder aside, so a crash mid-delete leaves nothing that looks like a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from hearth.errors import Conflict, InvalidRequest, ModelNotFound
from hearth.models.ids import validate_model_id
from hearth.models.schema import ModelInfo, SchemaError, merge_patch, normalize

MODEL_JSON = "model.json"
MODEL_SUFFIXES = (".gguf", ".bin", ".ggml")
PARTIAL_SUFFIXES = (".part", ".download", ".crdownload")
_TRASH_PREFIX = ".deleting-"


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
    _json_cache: dict[tuple[str, str | None], str] = field(default_factory=dict, repr=False)

    @property
    def model_path(self) -> Path | None:
        """The file the engine loads: the first present, non-projector GGUF (part 1 of a split)."""
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
        body["size"] = self.size
        body["status"] = status
        if error:
            body["error"] = error
        return body

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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _file_from_url(url: str | None) -> Path | None:
    if url and url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ModelStore:
    """Model folders under `models_dir`. Thread-safe; safe beside other processes."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.home = models_dir.parent
        self._cache: dict[str, tuple[tuple[int, ...], ModelEntry]] = {}
        self._renamed_claims: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ---- reading -------------------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        """Every model folder, sorted by id; duplicates of one id are both marked invalid."""
        entries: list[ModelEntry] = []
        seen: set[str] = set()
        try:
            scan = list(os.scandir(self.models_dir))
        except FileNotFoundError:
            return []
        for dirent in scan:
            if dirent.name.startswith(".") or not dirent.is_dir():
                continue
            seen.add(dirent.name)
            entry = self._load(dirent.path, dirent.name)
            if entry is not None:
                entries.append(entry)
        for stale in set(self._cache) - seen:
            del self._cache[stale]
        entries = self._mark_duplicates(entries)
        self._renamed_claims = {e.id for e in entries if e.id != e.folder.name}
        entries.sort(key=lambda e: e.id)
        return entries

    def get(self, model_id: str) -> ModelEntry:
        """The model with this id, or ModelNotFound. Invalid models are found by folder name."""
        validate_model_id(model_id)
        if model_id not in self._renamed_claims:
            entry = self._load(os.path.join(self.models_dir, model_id), model_id)
            if entry is not None and entry.id == model_id:
                return entry
        for entry in self.list():
            if entry.id == model_id or (entry.info is None and entry.folder.name == model_id):
                return entry
        raise ModelNotFound(model_id)

    def exists(self, model_id: str) -> bool:
        """True if a folder or a model already uses this id (for choosing a free id)."""
        if (self.models_dir / model_id).exists():
            return True
        return any(e.id == model_id for e in self.list())

    def _mark_duplicates(self, entries: list[ModelEntry]) -> list[ModelEntry]:
        claims: dict[str, list[ModelEntry]] = {}
        for entry in entries:
            if entry.info is not None:
                claims.setdefault(entry.id, []).append(entry)
        out: list[ModelEntry] = []
        for entry in entries:
            rivals = claims.get(entry.id, [])
            if entry.info is not None and len(rivals) > 1:
                names = " and ".join(self._rel(r.folder / MODEL_JSON) for r in rivals)
                out.append(
                    ModelEntry(
                        folder=entry.folder,
                        id=entry.folder.name,
                        info=None,
                        raw=entry.raw,
                        status="invalid",
                        error=(
                            f"{names} both claim the id '{entry.id}'. Ids must be unique: change "
                            "the 'id' field in one of them (or remove it to use the folder name)."
                        ),
                    )
                )
            else:
                out.append(entry)
        return out

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.home))
        except ValueError:
            return str(path)

    def _load(self, folder_path: str, name: str) -> ModelEntry | None:
        """Read one folder, reusing the cached record when neither it nor model.json changed.

        Plain strings, not Paths, on this path: it runs per folder on every list.
        """
        try:
            dst = os.stat(folder_path)
        except OSError:
            return None
        try:
            jst = os.stat(folder_path + "/" + MODEL_JSON)
            jkey: tuple[int, ...] = (jst.st_mtime_ns, jst.st_ctime_ns, jst.st_size, jst.st_ino)
        except FileNotFoundError:
            jkey = ()
        except OSError:
            jkey = (-1,)
        key = (dst.st_mtime_ns, dst.st_ino, *jkey)
        cached = self._cache.get(name)
        if cached and cached[0] == key:
            entry = cached[1]
            if entry.external:
                self._resolve_files(entry)
            return entry
        entry = self._read(Path(folder_path), has_json=bool(jkey))
        if entry is not None:
            self._cache[name] = (key, entry)
        return entry

    def _read(self, folder: Path, *, has_json: bool) -> ModelEntry | None:
        path = folder / MODEL_JSON
        raw: Any
        if not has_json:
            if not any(p.suffix.lower() in MODEL_SUFFIXES for p in _safe_iterdir(folder)):
                return None  # not a model folder (yet)
            raw = {}
        else:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                return self._invalid(folder, None, f"{self._rel(path)} cannot be read ({exc}).")
            except ValueError as exc:
                return self._invalid(
                    folder,
                    None,
                    f"{self._rel(path)} is not valid JSON: {exc}. Fix the file (an empty object "
                    "{} gives all defaults).",
                )
        try:
            st = path.stat() if has_json else folder.stat()
            info = normalize(raw, folder=folder, default_created=int(st.st_mtime))
        except SchemaError as exc:
            return self._invalid(
                folder, raw if isinstance(raw, dict) else None, f"{self._rel(path)}: {exc.message}"
            )
        entry = ModelEntry(folder=folder, id=info.id, info=info, raw=raw, status="ready")
        self._resolve_files(entry)
        return entry

    def _invalid(self, folder: Path, raw: dict[str, Any] | None, error: str) -> ModelEntry:
        return ModelEntry(
            folder=folder, id=folder.name, info=None, raw=raw, status="invalid", error=error
        )

    def _resolve_files(self, entry: ModelEntry) -> None:
        """Find the model's files: sources first; the file that exists wins over stale names."""
        info = entry.info
        assert info is not None
        folder = entry.folder
        listing = {p.name: p for p in _safe_iterdir(folder)}
        files: list[Path] = []
        missing: list[str] = []
        external: list[Path] = []
        partial = [p for n, p in listing.items() if n.lower().endswith(PARTIAL_SUFFIXES)]
        for source in info.sources:
            linked = _file_from_url(source.url)
            candidates = [folder / source.filename] if "/" not in source.filename else []
            if linked is not None:
                candidates.append(linked)
            found = next((c for c in candidates if c.is_file()), None)
            if found is not None:
                files.append(found)
                if linked is not None and found == linked:
                    external.append(found)
            else:
                missing.append(source.filename)
        llama_path = info.engine_parameters.get("llama_model_path")
        if isinstance(llama_path, str) and llama_path:
            candidate = folder / llama_path if not os.path.isabs(llama_path) else Path(llama_path)
            if candidate.is_file() and candidate not in files:
                files.insert(0, candidate)
                if missing and candidate.suffix.lower() in MODEL_SUFFIXES:
                    missing = [m for m in missing if "mmproj" in m.lower()]
        if not info.sources and not files:
            files = sorted(
                (p for n, p in listing.items() if p.suffix.lower() in MODEL_SUFFIXES),
                key=lambda p: ("mmproj" in p.name.lower(), p.name),
            )
        entry.files, entry.missing, entry.partial, entry.external = (
            files,
            missing,
            partial,
            external,
        )
        entry.size = sum(_size(p) for p in files)
        if info.is_remote:
            entry.status = "ready"
        elif partial and (missing or not files):
            entry.status = "downloading"
        elif missing or entry.model_path is None:
            entry.status = "missing"
        else:
            entry.status = "ready"

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, folder_name: str) -> Iterator[None]:
        """Serialize writes to one model: a thread lock plus flock on the folder (cross-process)."""
        with self._locks_guard:
            lock = self._locks.setdefault(folder_name, threading.Lock())
        with lock:
            folder = self.models_dir / folder_name
            try:
                fd = os.open(folder, os.O_RDONLY)
            except FileNotFoundError:
                yield
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def create(self, model_id: str, raw: dict[str, Any]) -> ModelEntry:
        """Write model.json into models/<id>/ (the folder may already hold the files)."""
        validate_model_id(model_id)
        folder = self.models_dir / model_id
        folder.mkdir(parents=True, exist_ok=True)
        with self.locked(model_id):
            if (folder / MODEL_JSON).exists():
                raise Conflict(
                    f"models/{model_id}/model.json already exists. Choose another id, or edit "
                    f"that model with PATCH /v1/models/{model_id}."
                )
            normalize(raw, folder=folder, default_created=int(time.time()))
            write_json_atomic(folder / MODEL_JSON, raw)
        return self.get(model_id)

    def update(self, model_id: str, patch: dict[str, Any]) -> ModelEntry:
        """Merge-patch model.json, validate, write atomically. Unknown fields are kept."""
        entry = self.get(model_id)
        if "id" in patch and patch["id"] != entry.id:
            raise InvalidRequest(
                f"The id of '{entry.id}' cannot change. To rename, create a new model.",
                param="id",
            )
        with self.locked(entry.folder.name):
            path = entry.folder / MODEL_JSON
            try:
                current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            except ValueError as exc:
                raise InvalidRequest(
                    f"{self._rel(path)} is not valid JSON ({exc}); fix it by hand first."
                ) from exc
            if not isinstance(current, dict):
                raise InvalidRequest(f"{self._rel(path)} must hold a JSON object; fix it first.")
            merged = merge_patch(current, patch)
            try:
                normalize(merged, folder=entry.folder, default_created=int(time.time()))
            except SchemaError as exc:
                raise InvalidRequest(exc.message, param=exc.field) from exc
            write_json_atomic(path, merged)
        return self.get(entry.id)

    def delete(self, model_id: str) -> ModelEntry:
        """Remove the model's folder. Files outside it (linked originals) are never touched."""
        entry = self.get(model_id)
        folder = entry.folder
        with self.locked(folder.name):
            if folder.is_symlink():
                folder.unlink()  # the user's real folder stays where it is
            else:
                trash = self.models_dir / f"{_TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}"
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
        self._cache.pop(folder.name, None)
        return entry

    def sweep_trash(self) -> None:
        """Finish deletes a crash interrupted (folders we renamed aside but did not remove)."""
        with contextlib.suppress(FileNotFoundError):
            for path in self.models_dir.iterdir():
                if path.name.startswith(_TRASH_PREFIX) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)


def _safe_iterdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
