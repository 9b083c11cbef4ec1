"""Turn model files into models: a file (moved, copied or linked) or a folder without model.json.

The generated model.json is filled from the file name and the GGUF header (never the whole
file): format, architecture, parameter count, quantization, context length, chat template,
BOS/EOS tokens, size. `engine_parameters.ctx_len` defaults to min(trained context, 8192).

Many-file models: split GGUFs (`name-00001-of-00003.gguf` ...) become one model with every part
in `sources`, in order; a vision projector (`mmproj*.gguf`, or a GGUF whose architecture is
`clip`) is attached to a model (`engine_parameters.mmproj`) rather than imported on its own.

Nothing is lost: a file that is not a model is left where it is (never moved or deleted) and the
reason is recorded in `ImportErrors`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core.errors import Conflict, Forbidden, InvalidModelFile, InvalidRequest
from hearth.models import janwrite
from hearth.models.gguf import GGUFInfo, read_gguf_header, sniff_format
from hearth.models.ids import (
    id_from_filename,
    is_valid_jan_id,
    readable_name,
    unique_id,
    validate_model_id,
)
from hearth.models.import_errors import ImportErrors
from hearth.models.schema import DEFAULT_ENGINE, normalize
from hearth.models.store import (
    MODEL_JSON,
    PARTIAL_SUFFIXES,
    ModelEntry,
    ModelStore,
    write_json_atomic,
)

STAGING_PREFIX = ".importing-"
MODES: tuple[str, ...] = ("move", "copy", "link")
DEFAULT_CTX_CAP = 8192
MODEL_SUFFIXES = (".gguf", ".bin", ".ggml")
SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SplitName:
    prefix: str
    number: int
    count: int

    def part(self, number: int, like: str) -> str:
        """The file name of part `number`, spelled like `like` (same case of the extension)."""
        return f"{self.prefix}-{number:05d}-of-{self.count:05d}{like[-5:]}"


def split_name(filename: str) -> SplitName | None:
    match = SPLIT_RE.match(filename)
    if not match:
        return None
    number, count = int(match["no"]), int(match["count"])
    if not 1 <= number <= count:
        return None
    return SplitName(match["prefix"], number, count)


def is_candidate(path: Path) -> bool:
    """A file the importer should look at: a model suffix, not hidden, not a partial download."""
    name = path.name.lower()
    return (
        not name.startswith(".")
        and name.endswith(MODEL_SUFFIXES)
        and not name.endswith(PARTIAL_SUFFIXES)
    )


def is_projector(path: Path, info: GGUFInfo | None) -> bool:
    if info is not None and (info.architecture == "clip" or info.model_type == "mmproj"):
        return True
    return "mmproj" in path.name.lower()


def check_model_file(path: Path) -> GGUFInfo | None:
    """Validate a model file's header. GGUF -> its info; legacy GGML -> None; else an error."""
    kind = sniff_format(path)
    if kind == "ggml":
        return None
    if kind is None and path.suffix.lower() != ".gguf":
        raise InvalidModelFile(
            f"{path.name} is not a model file: it has neither a GGUF nor a GGML header. "
            "Only GGUF (and legacy GGML) files can be imported."
        )
    return read_gguf_header(path)


def gguf_metadata(info: GGUFInfo | None, size: int) -> dict[str, Any]:
    """What model.json's `metadata` records about the file (read from its header)."""
    if info is None:
        return {"format": "ggml", "size": size}
    meta: dict[str, Any] = {
        "architecture": info.architecture,
        "parameter_count": info.parameter_count,
        "size_label": info.size_label,
        "quantization": info.quantization,
        "file_type": info.file_type,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "block_count": info.block_count,
        "vocab_size": info.vocab_size,
        "chat_template": info.chat_template,
        "bos_token": info.bos_token,
        "eos_token": info.eos_token,
        "size": size,
    }
    for key in ("general.author", "general.license", "general.basename", "general.finetune"):
        value = info.metadata.get(key)
        if isinstance(value, str):
            meta[key.split(".", 1)[1]] = value
    for key in ("attention.head_count", "attention.head_count_kv"):
        value = info.metadata.get(f"{info.architecture}.{key}")
        if isinstance(value, int):
            meta[key.replace("attention.", "")] = value
    return {k: v for k, v in meta.items() if v is not None}


def build_model_json(
    model_id: str,
    files: list[Path],
    infos: list[GGUFInfo | None],
    *,
    display_name: str,
    linked: bool = False,
    projector: Path | None = None,
) -> dict[str, Any]:
    """A fresh model.json for these files (parts in order; the first one's header speaks)."""
    info = infos[0]
    size = sum(p.stat().st_size for p in files)
    sources: list[dict[str, Any]] = []
    for path in files:
        source: dict[str, Any] = {"filename": path.name, "size": path.stat().st_size}
        if linked:
            source["url"] = path.resolve().as_uri()
        sources.append(source)
    engine_parameters: dict[str, Any] = {}
    if info is not None and info.context_length:
        engine_parameters["ctx_len"] = min(info.context_length, DEFAULT_CTX_CAP)
    if projector is not None:
        engine_parameters["mmproj"] = projector.name
        sources.append({"filename": projector.name, "size": projector.stat().st_size})
        size += projector.stat().st_size
    name = (info.name if info is not None and info.name else None) or display_name
    raw: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "name": name,
        "version": "1",
        "created": int(files[0].stat().st_mtime),
        "description": None,
        "format": info.format if info is not None else "ggml",
        "engine": DEFAULT_ENGINE,
        "engine_parameters": engine_parameters,
        "model_parameters": {},
        "metadata": gguf_metadata(info, size),
        "sources": sources,
    }
    if info is not None and info.eos_token:
        raw["model_parameters"]["stop"] = [info.eos_token]
    return raw


class Importer:
    """Imports files and folders into a ModelStore. One instance per home; thread-safe enough
    for one watcher thread plus API calls (each import holds the store's per-model lock)."""

    def __init__(
        self,
        store: ModelStore,
        errors: ImportErrors,
        *,
        allowed_roots: list[Path] | None = None,
    ) -> None:
        self.store = store
        self.errors = errors
        self.models_dir = store.models_dir
        roots = [store.home, *(allowed_roots or [])]
        self.allowed_roots = [Path(os.path.realpath(r)) for r in roots]

    # ---- the public entry points ---------------------------------------------------------

    def import_path(
        self,
        path: Path,
        *,
        model_id: str | None = None,
        mode: str = "copy",
        progress: Progress | None = None,
        check_allowed: bool = False,
    ) -> ModelEntry:
        """Import one file (a split GGUF: give any part; all parts come along)."""
        if mode not in MODES:
            raise InvalidRequest(
                f"mode must be one of {', '.join(MODES)}; got '{mode}'.", param="mode"
            )
        if "\x00" in str(path) or len(str(path).encode("utf-8", "surrogatepass")) > 4096:
            raise InvalidRequest(
                "The path has a NUL character or is longer than 4096 bytes, so it cannot name "
                "a file. Give the path of a .gguf file.",
                param="path",
            )
        path = Path(os.path.abspath(path))
        if check_allowed:
            self._check_allowed(path)
        if not path.is_file():
            raise InvalidRequest(
                f"{path} is not a file. Give the path of a .gguf file.", param="path"
            )
        jan = self.store.jan is not None
        if model_id is not None and not (jan and is_valid_jan_id(model_id)):
            validate_model_id(model_id)
        parts = self._split_parts(path)
        if check_allowed:
            for part in parts:  # every part: a sibling may be a link to anywhere
                self._check_allowed(part)
        if mode == "move":
            self._refuse_moving_held(parts)
        infos = [check_model_file(p) for p in parts]
        if is_projector(parts[0], infos[0]):
            raise InvalidRequest(
                f"{path.name} is a vision projector (mmproj), not a model. Put it into the "
                "model's folder (models/<id>/) and Hearth attaches it to that model.",
                param="path",
            )
        if jan:
            return self._import_jan(path, parts, model_id, mode, progress)
        base = split_name(parts[0].name)
        stem = base.prefix if base else parts[0].name
        inside_models = path.parent == self.models_dir
        if model_id is None and not inside_models:
            self._refuse_duplicate(path, parts[0])
        if model_id is not None:
            if self.store.exists(model_id):
                raise Conflict(
                    f"A model '{model_id}' already exists. Choose another id, or remove it first "
                    f"with `hearth models rm {model_id}`."
                )
            new_id = model_id
        else:
            new_id = unique_id(id_from_filename(stem), self.store.exists)
        folder = self._reserve(new_id, model_id, stem)
        staging = self.models_dir / f"{STAGING_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        placed: list[Path] = []
        if mode == "link":
            # Recorded before model.json exists: the store lets a model use a file outside its
            # folder only when the user linked it (or it lies under import_dirs).
            self.store.roots.add(parts)
        try:
            for p in parts:
                placed.append(self._place(p, staging, mode, progress))
            raw = build_model_json(
                folder.name,
                placed if mode != "link" else parts,
                infos,
                display_name=readable_name(stem),
                linked=mode == "link",
            )
            normalize(
                raw, folder=folder, default_created=int(time.time()), engines=self.store.engines
            )
            write_json_atomic(staging / MODEL_JSON, raw)
            # The model appears whole, in one rename: never a folder without its model.json.
            os.rename(staging, folder)
        except BaseException:
            self._undo(staging, parts, placed, mode)
            _remove_empty(folder)
            raise
        for p in parts:
            self.errors.clear(p)
        if inside_models:
            self.errors.clear(path)
        return self.store.get(folder.name)

    def _import_jan(
        self,
        path: Path,
        parts: list[Path],
        model_id: str | None,
        mode: str,
        progress: Progress | None,
    ) -> ModelEntry:
        """In a Jan data folder: the file placed as Jan's import places it
        (`llamacpp/models/<id>/model.gguf`, model.yml last; `janwrite.place_model`), under
        Jan's id for a local file (the sanitized stem) unless one is given."""
        assert self.store.jan is not None
        if len(parts) > 1:
            raise InvalidRequest(
                f"{path.name} is one part of a split GGUF; Jan keeps one model.gguf per model. "
                "Merge the parts first (`llama-gguf-split --merge`), then import the result.",
                param="path",
            )
        if model_id is None:
            self._refuse_duplicate(path, parts[0])
        jan_dir = self.store.jan.models_dir
        if model_id is not None:
            if self.store.exists(model_id):
                raise Conflict(
                    f"A model '{model_id}' already exists. Choose another id, or remove it first "
                    f"with `hearth models rm {model_id}`."
                )
            new_id = janwrite.free_jan_id(jan_dir, model_id)
        else:
            new_id = janwrite.free_jan_id(jan_dir, janwrite.id_for_file(path.name))
        if mode == "link":
            self.store.roots.add(parts)  # the user's own file, used where it is
        janwrite.place_model(
            jan_dir,
            new_id,
            parts[0],
            None,
            mode=mode,
            name_from=path.name,
            copy=lambda src, target: link_or_copy(src, target, progress),
        )
        self.errors.clear(parts[0])
        return self.store.get(new_id)

    def _reserve(self, new_id: str, asked: str | None, stem: str) -> Path:
        """Claim models/<id> with an empty folder (skipped by listings until filled)."""
        while True:
            folder = self.models_dir / new_id
            try:
                folder.mkdir(parents=True)
                return folder
            except FileExistsError:
                if asked is not None:
                    raise Conflict(f"models/{asked} already exists.") from None
                new_id = unique_id(id_from_filename(stem), self.store.exists)

    def _undo(self, staging: Path, parts: list[Path], placed: list[Path], mode: str) -> None:
        """Put a failed import back as it was: moved files return, copies go."""
        for original, done in zip(parts, placed, strict=False):
            if mode == "move" and done.exists() and not original.exists():
                os.rename(done, original)
            elif mode == "copy" and done.exists():
                done.unlink()
        shutil.rmtree(staging, ignore_errors=True)

    def recover_staging(self) -> None:
        """After a crash mid-import: move the user's files back into models/ (to be imported
        again) and drop the half-built folder. Nothing of the user's is lost."""
        for staging in self.models_dir.glob(f"{STAGING_PREFIX}*"):
            for path in staging.iterdir():
                if path.name != MODEL_JSON and not path.name.startswith("."):
                    target = self.models_dir / path.name
                    if not target.exists():
                        os.rename(path, target)
            shutil.rmtree(staging, ignore_errors=True)

    def adopt_folder(self, folder: Path) -> ModelEntry | None:
        """Write model.json for a folder that holds model files but has none. Files stay put."""
        if (folder / MODEL_JSON).exists():
            return None
        files = sorted(p for p in folder.iterdir() if p.is_file() and is_candidate(p))
        models: list[tuple[Path, GGUFInfo | None]] = []
        projector: Path | None = None
        for path in files:
            try:
                info = check_model_file(path)
            except InvalidModelFile as exc:
                self.errors.record(path, exc.message)
                continue
            if is_projector(path, info):
                projector = projector or path
            else:
                models.append((path, info))
        if not models:
            return None
        first_path = models[0][0]
        split = split_name(first_path.name)
        if split:
            wanted = [split.part(n, first_path.name) for n in range(1, split.count + 1)]
            missing = [w for w in wanted if not (folder / w).exists()]
            if missing:
                self.errors.record(
                    folder,
                    f"models/{folder.name} is waiting for split part(s) {', '.join(missing)}. "
                    "Copy the missing part(s) into the folder.",
                    state="waiting",
                )
                return None
            chosen = [(folder / w, dict(models).get(folder / w)) for w in wanted]
        else:
            chosen = [models[0]]
        stem = split.prefix if split else first_path.name
        raw = build_model_json(
            folder.name,
            [p for p, _ in chosen],
            [i for _, i in chosen],
            display_name=readable_name(stem),
            projector=projector,
        )
        self.errors.clear(folder)
        return self.store.create(folder.name, raw)

    def attach_projector(self, projector: Path, entry: ModelEntry) -> ModelEntry:
        """Attach an mmproj file to a model: moved into its folder if needed, recorded in
        `engine_parameters.mmproj` and `sources`. A projector the user already set is kept."""
        assert entry.info is not None
        current = entry.info.engine_parameters.get("mmproj")
        if current and current != projector.name:
            raise Conflict(
                f"Model '{entry.id}' already uses the projector {current}; remove "
                f"engine_parameters.mmproj first to attach {projector.name}."
            )
        target = entry.folder / projector.name
        if projector.parent != entry.folder:
            if target.exists():
                raise Conflict(
                    f"models/{entry.id}/{projector.name} already exists; not overwriting it."
                )
            os.rename(projector, target)
        patch: dict[str, Any] = {"engine_parameters": {"mmproj": target.name}}
        if not any(s.filename == target.name for s in entry.info.sources):
            sources = [s.model_dump(exclude_none=True) for s in entry.info.sources]
            if sources:
                patch["sources"] = [
                    *sources,
                    {"filename": target.name, "size": target.stat().st_size},
                ]
        self.errors.clear(projector)
        return self.store.update(entry.id, patch)

    # ---- helpers -------------------------------------------------------------------------

    def _refuse_duplicate(self, given: Path, first: Path) -> None:
        """An import of a file some model already holds is refused, naming that model: a second
        import without `--id` is almost always a mistake (it used to make an `x-2` copy).

        The same file: the same inode (the file itself, a hard-linked copy, a linked import),
        or the same name, size and modification time (the importer's own copy onto another
        disk keeps them). Contents are not hashed: that would read gigabytes for each import.
        Drops into models/ are not asked: the watcher imports what is put there."""
        owner = self.holder_of(first)
        if owner is not None:
            raise Conflict(
                f"{given.name} is already imported as '{owner}'. To import it again, give it a "
                f"new id (`hearth models import {given} --id NEW`; over the API, the `id` field).",
                code="already_imported",
            )

    def _refuse_moving_held(self, parts: list[Path]) -> None:
        """A move never takes a file a listed model (Jan's or Hearth's) holds: it would leave
        that model without its weights. Copy and link leave the file as it is."""
        for part in parts:
            try:
                st = os.stat(part)
            except OSError:
                continue
            for entry in self.store.list():
                for held in entry.files:
                    with contextlib.suppress(OSError):
                        other = os.stat(held)
                        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                            raise Conflict(
                                f"{part.name} is the file of the model '{entry.id}'; moving it "
                                "would leave that model without it. Import it with mode copy "
                                "or link instead, or remove that model first.",
                                code="file_in_use",
                            )

    def holder_of(self, path: Path) -> str | None:
        """The id of a model whose files include `path`'s (see `_refuse_duplicate`)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        for entry in self.store.list():
            for held in entry.files:
                try:
                    other = os.stat(held)
                except OSError:
                    continue
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    return entry.id
                copied = (held.name, other.st_size, other.st_mtime_ns)
                if copied == (path.name, st.st_size, st.st_mtime_ns):
                    return entry.id
        return None

    def _check_allowed(self, path: Path) -> None:
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in self.allowed_roots):
            raise Forbidden(
                f"Importing from {path} is not allowed over the API. Allowed: the home folder "
                "and the folders in the 'import_dirs' setting (HEARTH_IMPORT_DIRS). Add its "
                "folder there, or run `hearth models import PATH` on this machine.",
                param="path",
            )

    def _split_parts(self, path: Path) -> list[Path]:
        split = split_name(path.name)
        if split is None:
            return [path]
        parts = [path.parent / split.part(n, path.name) for n in range(1, split.count + 1)]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise InvalidRequest(
                f"{path.name} is part of a split model, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing from {path.parent}. Put every "
                "part in the same folder, then import again.",
                param="path",
            )
        return parts

    def _place(self, src: Path, folder: Path, mode: str, progress: Progress | None) -> Path:
        target = folder / src.name
        if mode == "link":
            return src
        if mode == "move":
            try:
                os.rename(src, target)  # same filesystem: instant, never a copy
            except OSError:
                shutil.move(src, target)
            return target
        link_or_copy(src, target, progress)
        return target


def link_or_copy(src: Path, target: Path, progress: Progress | None = None) -> None:
    """A copy import's file: a hard link on the same filesystem, else a copy (via a temp)."""
    try:
        os.link(src, target)  # same filesystem: a second name for the same bytes, instant
    except OSError:
        _copy_with_progress(src, target, progress)
    else:
        if progress is not None:
            size = target.stat().st_size
            progress(size, size)


def _copy_with_progress(src: Path, target: Path, progress: Progress | None) -> None:
    """Copy to a hidden temp name, then rename: a crash never leaves a half file that looks real."""
    total = src.stat().st_size
    tmp = target.with_name(f".{target.name}.copying")
    done = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(8 << 20):
                fout.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)
        os.rename(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def open_for_writing(path: Path) -> bool | None:
    """Does any process hold this file open for writing? None where we cannot tell (no /proc).

    Linux only: walks /proc/<pid>/fd (a few ms). Lets a file that was moved in whole be imported
    at once, while one a program is still writing waits, without guessing from timestamps.
    """
    if not os.path.isdir("/proc/self/fd"):
        return None
    target = os.path.realpath(path)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    for line in info:
                        if line.startswith("flags:") and int(line.split()[1], 8) & 3:
                            return True
            except (OSError, ValueError):
                continue
    return False


def seconds_since_change(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
