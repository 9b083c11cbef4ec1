"""The store's shelf of Jan's models: found as Jan finds them, read once per file version.

`ModelStore` (models/store.py) lists Hearth's model.json folders and, in a Jan data folder,
these: every folder under `llamacpp/models/` holding a `model.yml` (`janmodels.walk_models`).
Like the store's own folders, each list re-stats every model.yml and the files it names and
re-reads only what changed (keyed by mtime, ctime, size and inode, plus Jan's llama.cpp
settings file, whose values every Jan model starts from), so a list of 1,000 Jan models stays
a few milliseconds of stat calls.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from hearth.core.errors import InvalidRequest
from hearth.core.jan import STATE_FOLDER
from hearth.models.entry import ModelEntry
from hearth.models.ids import is_valid_jan_id
from hearth.models.janmodels import (
    SETTINGS_FILE,
    JanFolder,
    JanModelError,
    id_problem,
    read_jan_model,
    read_llamacpp_settings,
    walk_sorted,
    yml_key,
)
from hearth.models.janyml import MODEL_YML
from hearth.models.schema import EngineRules, ModelInfo, SchemaError, normalize

Key = tuple[int, ...]


def _stat_key(path: str | Path) -> Key:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class JanShelf:
    """Jan's models under `<data>/llamacpp/models`, for one `ModelStore`."""

    def __init__(self, models_dir: Path, engines: EngineRules) -> None:
        self.models_dir = models_dir
        self.data_dir = models_dir.parent.parent
        #: Hearth's own folder in the data folder (`core.jan.state_dir`): deletes' trash.
        self.state_dir = self.data_dir / STATE_FOLDER
        self.engines = engines
        self.settings_path = models_dir.parent / SETTINGS_FILE
        self._settings: tuple[Key, dict[str, Any]] = ((-1,), {})
        #: id -> (model.yml's key + settings' key, the files it names, their keys, entry)
        self._cache: dict[str, tuple[Key, tuple[str, ...], tuple[Key, ...], ModelEntry]] = {}

    # ---- reading -----------------------------------------------------------------------------

    def defaults(self) -> tuple[Key, dict[str, Any]]:
        """Jan's llama.cpp settings as an engine_parameters layer, re-read when it changes."""
        key = _stat_key(self.settings_path)
        if self._settings[0] != key:
            self._settings = (key, read_llamacpp_settings(self.settings_path, self.engines))
        return self._settings

    def scan(
        self, pause_every: int = 0, slice_s: float = 0.0
    ) -> Generator[int, None, list[ModelEntry]]:
        """Every Jan model, in id order. Like the store's own scan, pauses (yields how many
        model.yml were read) every `pause_every` models or once a step ran `slice_s` seconds
        (0: never), so an event loop that drives it is never held up for long (a first list
        reads every model.yml)."""
        found = walk_sorted(self.models_dir)
        settings_key, defaults = self.defaults()
        entries: list[ModelEntry] = []
        read, countdown = 0, pause_every
        clock = time.monotonic
        deadline = clock() + slice_s if slice_s else math.inf
        for folder in found:
            countdown -= 1
            if countdown == 0 or clock() > deadline:
                yield read
                read, countdown = 0, pause_every
                deadline = clock() + slice_s if slice_s else math.inf
            entry, fresh = self._load(folder, settings_key, defaults)
            read += fresh
            entries.append(entry)
        if len(self._cache) > len(entries):
            for stale in self._cache.keys() - {e.id for e in entries}:
                self._cache.pop(stale, None)
        return entries

    def get(self, model_id: str) -> ModelEntry | None:
        """Jan's model of this id, or None: the folder must be one Jan's walk finds (no hidden
        or linked folder on the way, no model folder above it)."""
        if not is_valid_jan_id(model_id):
            return None
        place = str(self.models_dir)
        parts = model_id.split("/")
        for i, part in enumerate(parts):
            place += "/" + part
            try:
                if part[0] == "." or os.path.islink(place) or not os.path.isdir(place):
                    return None
            except OSError:
                return None
            if os.path.lexists(place + "/" + MODEL_YML):
                if i != len(parts) - 1:
                    return None  # inside a model's folder: Jan never looks there
                found = JanFolder(model_id, place, yml_key(place) or ())
                settings_key, defaults = self.defaults()
                return self._load(found, settings_key, defaults)[0]
        return None

    def exists(self, model_id: str) -> bool:
        return is_valid_jan_id(model_id) and (self.models_dir / model_id).exists()

    def _load(
        self, found: JanFolder, settings_key: Key, defaults: dict[str, Any]
    ) -> tuple[ModelEntry, int]:
        """The cached entry while model.yml, the settings and the files it names are unchanged;
        else the file read again. Returns (entry, 1 if read)."""
        key = (*found.key, -1, *settings_key)
        cached = self._cache.get(found.id)
        if cached and cached[0] == key and tuple(map(_stat_key, cached[1])) == cached[2]:
            return cached[3], 0
        entry = self._read(found, defaults)
        paths = tuple(map(str, entry.files))
        self._cache[found.id] = (key, paths, tuple(map(_stat_key, paths)), entry)
        return entry, 1

    def _read(self, found: JanFolder, defaults: dict[str, Any]) -> ModelEntry:
        problem = id_problem(found.id)
        if problem is not None:
            return self._invalid(found, problem)
        try:
            model = read_jan_model(self.data_dir, found, defaults, self.engines)
            created = int(os.stat(found.yml).st_mtime)
            info = normalize(
                model.raw, folder=found.folder, default_created=created, engines=self.engines
            )
        except JanModelError as exc:
            return self._invalid(found, str(exc))
        except SchemaError as exc:
            message = exc.message.replace("'model_parameters.", "'")  # Jan's own key names
            return self._invalid(found, f"{self._rel(found.yml)}: {message}")
        except OSError as exc:
            return self._invalid(found, f"{self._rel(found.yml)} cannot be read ({exc.strerror}).")
        info.id = found.id
        entry = ModelEntry(
            folder=found.folder,
            id=found.id,
            info=info,
            raw=model.yml,
            status="ready",
            files=model.files,
            jan_file=found.yml,
        )
        entry.size = sum(_size(p) for p in model.files)
        entry.external = [p for p in model.files if not _inside(p, found.folder)]
        return entry

    def _invalid(self, found: JanFolder, error: str) -> ModelEntry:
        return ModelEntry(
            folder=found.folder,
            id=found.id,
            info=None,
            raw=None,
            status="invalid",
            error=error,
            jan_file=found.yml,
        )

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.data_dir))
        except ValueError:
            return str(path)

    def check_edit(
        self,
        entry: ModelEntry,
        yml: dict[str, Any],
        check: Callable[[ModelInfo], None] | None = None,
    ) -> None:
        """An edited model.yml read as a list would read it, before it is written: a value the
        reader would refuse is InvalidRequest naming it, never a model that turns invalid."""
        found = JanFolder(entry.id, str(entry.folder))
        try:
            model = read_jan_model(self.data_dir, found, self.defaults()[1], self.engines, yml)
            info = normalize(
                model.raw, folder=entry.folder, default_created=0, engines=self.engines
            )
        except JanModelError as exc:
            raise InvalidRequest(str(exc)) from None
        except SchemaError as exc:
            raise InvalidRequest(exc.message, param=exc.field) from None
        if check is not None:
            info.id = entry.id
            check(info)

    # ---- beside Hearth's folders -------------------------------------------------------------

    def merge(self, home: list[ModelEntry], jan: list[ModelEntry]) -> list[ModelEntry]:
        """Both lists in id order; a Hearth folder (Jan's older `models/` tree) whose id Jan's
        llamacpp tree also has is shown invalid, as a duplicate, and Jan's model wins."""
        if not jan:
            return home
        taken = {e.id for e in jan}
        out = list(jan)
        for entry in home:
            if entry.id in taken:
                rel = self._rel(entry.folder)
                entry = ModelEntry(
                    folder=entry.folder,
                    id=entry.id,
                    info=None,
                    raw=entry.raw,
                    status="invalid",
                    error=(
                        f"{rel} has the id '{entry.id}', which Jan's model llamacpp/models/"
                        f"{entry.id} also has; Jan's is used. Remove or rename {rel} (it is "
                        "Jan's older copy) to see it again."
                    ),
                )
            out.append(entry)
        out.sort(key=lambda e: e.id)
        return out


def _inside(path: Path, folder: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip("/") + "/")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
