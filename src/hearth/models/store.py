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
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from hearth.core import atomic
from hearth.core.errors import Conflict, InvalidRequest, ModelNotFound
from hearth.core.keyedlocks import KeyedLocks
from hearth.models import janwrite
from hearth.models.entry import MODEL_SUFFIXES, ModelEntry
from hearth.models.ids import is_valid_id, is_valid_jan_id, validate_any_id, validate_model_id
from hearth.models.jan_store import JanShelf
from hearth.models.janyml import ModelYmlError, read_model_yml
from hearth.models.links import FileRoots, is_inside
from hearth.models.schema import (
    EngineRules,
    ModelInfo,
    PlainRules,
    SchemaError,
    check_new_engine_parameters,
    merge_patch,
    normalize,
)

__all__ = ["MODEL_JSON", "MODEL_SUFFIXES", "ModelEntry", "ModelStore", "write_json_atomic"]

MODEL_JSON = "model.json"
PARTIAL_SUFFIXES = (".part", ".download", ".crdownload")
_TRASH_PREFIX = ".deleting-"
_by_id = attrgetter("id")
_by_name = attrgetter("name")
_SLASH_MODEL_JSON = "/" + MODEL_JSON


# Inside ModelStore, `list` names its method: signatures there use this alias.
Entries = list[ModelEntry]


def _file_from_url(url: str | None) -> Path | None:
    if url and url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one.

    Durable (fsync of the file and the folder); a full disk is InsufficientStorage. The temp
    name carries the writer's pid (`atomic.temp_name`), so `sweep_temp_files` can tell a leftover
    from a kill -9 apart from a file another live process is writing right now.
    """
    atomic.write_json(path, data, indent=2, newline=True, storage_error=True)


class ModelStore:
    """Model folders under `models_dir`. Thread-safe; safe beside other processes."""

    def __init__(
        self,
        models_dir: Path,
        roots: FileRoots | None = None,
        engines: EngineRules | None = None,
        jan_models_dir: Path | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.home = models_dir.parent
        #: Where model files may live besides each model's own folder (import_dirs, CLI links).
        self.roots = roots if roots is not None else FileRoots(self.home)
        #: What the engine kinds say about a model.json (the service layer hands them in).
        self.engines: EngineRules = engines if engines is not None else PlainRules()
        self._cache: dict[str, tuple[tuple[int, ...], ModelEntry]] = {}
        self._renamed_claims: set[str] = set()
        self._locks = KeyedLocks()  # only folders being written: none kept after
        #: Jan's models (`<data>/llamacpp/models/**/model.yml`) in a Jan data folder, else None.
        self.jan = JanShelf(jan_models_dir, self.engines) if jan_models_dir is not None else None

    # ---- reading -------------------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        """Every model folder, sorted by id; duplicates of one id are both marked invalid."""
        steps = self.scan()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                entries: Entries = done.value  # the generator's return value
                return entries

    def scan(self, pause_every: int = 0, slice_s: float = 0.0) -> Generator[int, None, Entries]:
        """`list` in steps (`_scan_home`), then Jan's models in a Jan data folder (`JanShelf`):
        an id Jan keeps wins over a Hearth folder of the same name, shown as a duplicate."""
        entries = yield from self._scan_home(pause_every, slice_s)
        if self.jan is None:
            return entries
        jan = yield from self.jan.scan(pause_every, slice_s)
        return self.jan.merge(entries, jan)

    def _scan_home(
        self, pause_every: int = 0, slice_s: float = 0.0
    ) -> Generator[int, None, Entries]:
        """`list` in steps: a generator that pauses after every `pause_every` folders (0: never),
        or sooner once a step has run `slice_s` seconds (0: no limit), and returns the entries.
        Each pause yields how many folders were read (new or changed) since the last one.
        An event loop resumes it between other work, so 5,000 folders
        (~10,000 stat calls, tens of milliseconds) never hold up a request for long. The time
        limit keeps steps short when folders are slow: new ones (model.json read and checked),
        or stat calls that wait for the GIL behind a busy worker thread. Each folder
        is stat-ed when the scan reaches it, so a change made before the scan started is seen.

        The loop is the hot path of every list: an unchanged folder with a model.json is matched
        to its cached record right here (stat relative to the open models folder, the same key
        as `_load`); anything else goes through `_load`.
        """
        try:
            dir_fd = os.open(self.models_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return []
        try:
            dirents = sorted(os.scandir(dir_fd), key=_by_name)  # ids are names but for renames
            entries: list[ModelEntry] = []
            renamed = False
            base = str(self.models_dir) + "/"
            stat, cache, load = os.stat, self._cache, self._load
            countdown = pause_every
            clock = time.monotonic
            deadline = clock() + slice_s if slice_s else math.inf
            read = 0
            for dirent in dirents:
                countdown -= 1
                if countdown == 0 or clock() > deadline:
                    yield read
                    countdown, read = pause_every, 0
                    deadline = clock() + slice_s if slice_s else math.inf
                name = dirent.name
                if name[0] == "." or not dirent.is_dir():
                    continue
                entry = None
                try:
                    dst = stat(name, dir_fd=dir_fd)
                    jst = stat(name + _SLASH_MODEL_JSON, dir_fd=dir_fd)
                    cached = cache.get(name)
                    if cached is not None and cached[0] == (
                        dst.st_mtime_ns,
                        dst.st_ino,
                        jst.st_mtime_ns,
                        jst.st_ctime_ns,
                        jst.st_size,
                        jst.st_ino,
                    ):
                        entry = cached[1]
                        if entry.external:
                            entry = None  # its linked files are re-resolved on every list
                except OSError:
                    pass  # gone, no model.json, unreadable: _load tells which
                if entry is None:
                    read += 1
                    entry = load(base + name, name)
                    if entry is None:
                        continue
                entries.append(entry)
                renamed = renamed or entry.id != name
        finally:
            os.close(dir_fd)
        return self._finish_scan(entries, renamed)

    def _finish_scan(self, entries: Entries, renamed: bool) -> Entries:
        """Forget folders that went away; with a renamed model (an id that is not its folder's
        name), mark duplicate ids and sort by id. Otherwise the folder order is the id order."""
        if len(self._cache) > len(entries):  # every entry is cached: some folder went away
            for stale in self._cache.keys() - {e.folder.name for e in entries}:
                self._cache.pop(stale, None)
        if not renamed:
            self._renamed_claims = set()
            return entries
        entries = self._mark_duplicates(entries)  # two claims of an id need a renamed model
        self._renamed_claims = {e.id for e in entries if e.id != e.folder.name}
        entries.sort(key=_by_id)
        return entries

    def get(self, model_id: str) -> ModelEntry:
        """The model with this id, or ModelNotFound. Invalid models are found by folder name.
        In a Jan data folder, Jan's model of that id comes first (Jan's ids may nest)."""
        validate_any_id(model_id)
        if self.jan is not None and is_valid_jan_id(model_id):
            found = self.jan.get(model_id)
            if found is not None:
                return found
        if not is_valid_id(model_id):
            raise ModelNotFound(model_id)
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
        if self.jan is not None and self.jan.exists(model_id):
            return True
        return any(e.id == model_id for e in self.list())

    def _mark_duplicates(self, entries: Entries) -> Entries:
        claims: dict[str, Entries] = {}
        for entry in entries:
            if entry.info is not None:
                claims.setdefault(entry.id, []).append(entry)
        out: Entries = []
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
            hit = cached[1]
            if hit.external:
                self._resolve_files(hit)
            return hit
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
        elif os.path.islink(path) and not is_inside(
            os.path.realpath(path), os.path.realpath(folder)
        ):
            return self._invalid(
                folder,
                None,
                f"{self._rel(path)} is a link to a file outside the model's folder, which a model "
                "folder may not use (it could come from anyone). Replace it with a real file.",
            )
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
            info = normalize(
                raw, folder=folder, default_created=int(st.st_mtime), engines=self.engines
            )
        except SchemaError as exc:
            return self._invalid(
                folder, raw if isinstance(raw, dict) else None, f"{self._rel(path)}: {exc.message}"
            )
        try:
            self.check_places(info, folder)
        except SchemaError as exc:
            return self._invalid(folder, raw, f"{self._rel(path)}: {exc.message}")
        entry = ModelEntry(folder=folder, id=info.id, info=info, raw=raw, status="ready")
        self._resolve_files(entry)
        outside = self._outside(entry)
        if outside:
            return self._invalid(
                folder,
                raw,
                f"{self._rel(outside)} leads to a file outside the model's folder, which a model "
                "folder may not do (it could come from anyone). To use a file where it is, run "
                "`hearth models import FILE --mode link`, or add its folder to the 'import_dirs' "
                "setting.",
            )
        return entry

    def check_places(self, info: ModelInfo, folder: Path) -> None:
        """A model.json may name files in its own folder only, unless the user chose otherwise
        (a CLI link, import_dirs): SchemaError names the field. Remote models name no files."""
        if info.is_remote:
            return
        real_folder = os.path.realpath(folder)
        fix = (
            "Model files live in the model's folder; to use a file where it is, run `hearth "
            "models import FILE --mode link` or add its folder to the 'import_dirs' setting."
        )
        places = [(f"sources[{i}].url", _file_from_url(s.url)) for i, s in enumerate(info.sources)]
        llama_path = info.engine_parameters.get("llama_model_path")
        if isinstance(llama_path, str):
            places.append(("engine_parameters.llama_model_path", folder / llama_path))
        for name, place in places:
            if place is None:
                continue
            try:
                real = os.path.realpath(place)
            except (ValueError, OSError):
                real = ""
            if not real or not self.roots.allows(real, real_folder):
                shown = str(place) if len(str(place)) <= 200 else str(place)[:200] + "..."
                raise SchemaError(
                    name, f"'{name}' points outside the model's folder ({shown}). {fix}"
                )

    def _refuse_links_out(self, folder: Path, info: ModelInfo, raw: dict[str, Any]) -> None:
        """An edit whose files (sources, mmproj) resolve through a link to outside the folder is
        refused before it is written, as loading would list it invalid."""
        probe = ModelEntry(folder=folder, id=info.id, info=info, raw=raw, status="ready")
        self._resolve_files(probe)
        outside = self._outside(probe)
        if outside is not None:
            raise InvalidRequest(
                f"{self._rel(outside)} leads to a file outside the model's folder, so this edit "
                "could never load. Use a file inside the folder, `hearth models import FILE "
                "--mode link`, or a folder in the 'import_dirs' setting.",
                param="sources" if outside in probe.files else "engine_parameters.mmproj",
            )

    def check_launch(self, entry: ModelEntry, extra: Sequence[str]) -> None:
        """Before an engine opens the model's files: each must resolve inside the folder (or
        where the user allowed), now, not only when the folder was read. `extra` are file
        names a start request adds (a projector), resolved beside the model file."""
        model_path = entry.model_path
        base = model_path.parent if model_path is not None else entry.folder
        outside = self._outside(entry, [base / name for name in extra])
        if outside is not None:
            raise InvalidRequest(
                f"Model '{entry.id}' would open {self._rel(outside)}, which leads outside the "
                "model's folder. Model files live in the model's folder; to use a file where it "
                "is, run `hearth models import FILE --mode link` or add its folder to the "
                "'import_dirs' setting.",
                param="model",
                code="file_outside_folder",
            )

    def _outside(self, entry: ModelEntry, more: Sequence[Path] = ()) -> Path | None:
        """The first of the model's files that resolves outside where it may live (a symlink
        in a shared folder that leads to /etc/shadow, say), or None."""
        if entry.info is None or entry.info.is_remote:
            return None
        real_folder = os.path.realpath(entry.folder)
        if entry.jan_file is not None:  # the files model.yml names are the user's choice
            own = {os.path.realpath(p) for p in entry.files}
            for path in [*entry.files, *more]:
                real = os.path.realpath(path)
                if real not in own and not is_inside(real, real_folder):
                    return path
            return None
        paths = [*entry.files, *more]
        mmproj = entry.info.engine_parameters.get("mmproj")
        if isinstance(mmproj, str) and "\x00" not in mmproj:
            paths.append(entry.folder / mmproj)  # a projector the sources do not list
        for path in paths:
            if not self.roots.allows(os.path.realpath(path), real_folder):
                return path
        return None

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
            files = sorted(  # regular files only: a FIFO or a folder named x.gguf is no model
                (p for p in listing.values() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()),
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
        with self._locks.hold(folder_name):
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
            try:
                info = normalize(
                    raw, folder=folder, default_created=int(time.time()), engines=self.engines
                )
                self.check_places(info, folder)
            except SchemaError as exc:
                raise InvalidRequest(exc.message, param=exc.field) from exc
            write_json_atomic(folder / MODEL_JSON, raw)
        return self.get(model_id)

    def update(
        self,
        model_id: str,
        patch: dict[str, Any],
        check: Callable[[ModelInfo], None] | None = None,
    ) -> ModelEntry:
        """Merge-patch model.json, validate (as loading does, plus `check`), write atomically.
        Unknown fields are kept; nothing is written when any check fails."""
        entry = self.get(model_id)
        if entry.jan_file is not None:
            return self._update_jan(entry, patch, check)
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
                info = normalize(
                    merged,
                    folder=entry.folder,
                    default_created=int(time.time()),
                    engines=self.engines,
                )
                check_new_engine_parameters(patch, info, self.engines)
                self.check_places(info, entry.folder)
            except SchemaError as exc:
                raise InvalidRequest(exc.message, param=exc.field) from exc
            self._refuse_links_out(entry.folder, info, merged)
            if check is not None:
                check(info)
            write_json_atomic(path, merged)
        return self.get(entry.id)

    def delete(self, model_id: str) -> ModelEntry:
        """Remove the model's folder. Files outside it (linked originals) are never touched."""
        entry = self.get(model_id)
        if entry.jan_file is not None and self.jan is not None:
            with self._locks.hold("jan:" + entry.id):
                janwrite.delete_model(self.jan.models_dir, self.jan.state_dir, entry.folder)
            return entry
        self.remove_home_folder(entry)
        return entry

    def get_home(self, model_id: str) -> ModelEntry | None:
        """The Hearth folder `models/<id>` read as a model (never Jan's model of that id)."""
        if not is_valid_id(model_id):
            return None
        return self._load(os.path.join(self.models_dir, model_id), model_id)

    def remove_home_folder(self, entry: ModelEntry) -> None:
        """Remove a Hearth model folder: renamed aside first, linked originals untouched."""
        folder = entry.folder
        with self.locked(folder.name):
            if folder.is_symlink():
                folder.unlink()  # the user's real folder stays where it is
            else:
                trash = self.models_dir / f"{_TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}"
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
        self._cache.pop(folder.name, None)

    def _update_jan(
        self,
        entry: ModelEntry,
        patch: dict[str, Any],
        check: Callable[[ModelInfo], None] | None,
    ) -> ModelEntry:
        """An edit of a model Jan keeps: its model.yml rewritten whole (`janwrite`), only the
        keys the edit maps to changed; checked as the reader would read the result first."""
        assert entry.jan_file is not None and self.jan is not None
        if "id" in patch and patch["id"] != entry.id:
            raise InvalidRequest(
                f"The id of '{entry.id}' cannot change. To rename, create a new model.",
                param="id",
            )
        changes = janwrite.jan_patch(patch)
        with self._locks.hold("jan:" + entry.id):
            try:
                current = read_model_yml(entry.jan_file)
            except ModelYmlError as exc:
                raise InvalidRequest(f"{exc} Fix it by hand first.") from None
            self.jan.check_edit(entry, {**current, **changes}, check)
            janwrite.update_model_yml(entry.jan_file, changes)
        return self.get(entry.id)

    def sweep_trash(self) -> None:
        """Finish deletes a crash interrupted (folders we renamed aside but did not remove),
        and remove temp files of atomic writes whose writer died (kill -9 mid-write)."""
        folders = [self.home]
        with contextlib.suppress(FileNotFoundError):
            for path in self.models_dir.iterdir():
                if path.name.startswith(_TRASH_PREFIX) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.is_dir() and not path.is_symlink():
                    folders.append(path)
        sweep_temp_files(folders)
        if self.jan is not None:
            janwrite.sweep_trash(self.jan.state_dir)
            janwrite.sweep_placing(self.jan.models_dir)


def sweep_temp_files(folders: list[Path]) -> None:
    """Delete `write_json_atomic` leftovers (temp files of a `.json`) whose writer is gone."""
    for folder in folders:
        try:
            names = [d.name for d in os.scandir(folder) if d.name.endswith(".tmp")]
        except OSError:
            continue
        for name in names:
            found = atomic.parse_temp(name)
            if found is None or not found[0].endswith(".json") or atomic.writer_alive(found[1]):
                continue
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


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
