"""Writes Jan can read: models placed, edited and deleted in Jan's layout (Jan 0.6 to 0.8).

In a Jan data folder a model Hearth adds lands where Jan would put it,
`<data>/llamacpp/models/<id>/model.gguf` (+ `mmproj.gguf`), and `model.yml` is written LAST, so a
crash never leaves a model.yml beside half a file (Jan's walk takes any folder holding a
model.yml for a model). The keys and their order are those of Jan's own import
(extensions/llamacpp-extension/src/index.ts, `modelConfig` in `import()`): `model_path`,
`mmproj_path`, `name`, `size_bytes`, the download's sha256 and sizes, `embedding`,
`embedding_check_v`, and for an embedding model `pooling`/`ubatch_size`/`batch_size`. Keys Jan
computes with detectors Hearth does not have (`mtp_layers`, `template_kwargs`) are left out: Jan
re-detects whatever has no current `*_check_v`.

Ids follow Jan's rules (web-app/src/lib/utils.ts `sanitizeModelId`): every character outside
`[A-Za-z0-9/_.-]` deleted, then `.` turned into `_`; a Hugging Face file gets
`<author>/<sanitized stem>`, a local file its sanitized stem.

An edit rewrites the whole mapping read (unknown keys and their order kept), changing only the
keys the edit maps to; a delete renames the folder aside into Hearth's own folder first, then
removes it and the empty folders of a nested id. Nothing else of Jan's is ever written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core import atomic
from hearth.core.errors import Conflict, InvalidRequest
from hearth.models.gguf import GGUFInfo, read_gguf_header
from hearth.models.ids import is_valid_jan_id
from hearth.models.janmodels import JAN_ENGINE_KEYS, JAN_SAMPLING_KEYS
from hearth.models.janyml import MODEL_YML, read_model_yml, relative_path, write_model_yml

#: Jan's current embedding detector version (`EMBEDDING_CHECK_VERSION`).
EMBEDDING_CHECK_V = 3
#: Jan's `EMBEDDING_GGUF_ARCHS` (web-app/src/lib/utils.ts).
EMBEDDING_ARCHS = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "xlm-roberta",
     "mpnet", "t5encoder"}
)  # fmt: skip
MODEL_FILE = "model.gguf"
MMPROJ_FILE = "mmproj.gguf"
OUR_FILES = (MODEL_FILE, MMPROJ_FILE)
TRASH_DIR = "trash"
#: Hearth's marker in a model folder it is filling (removed once model.yml is written).
PLACING = ".hearth-placing.json"
_NOT_JAN = re.compile(r"[^A-Za-z0-9/_.\-]")
#: Hearth's edit fields (model.json terms) -> Jan's model.yml key: the reader's maps reversed.
ENGINE_TO_JAN = {hearth: jan for jan, hearth in JAN_ENGINE_KEYS.items()} | {
    "chat_template": "chat_template"
}
SAMPLING_TO_JAN = {key: key for key in JAN_SAMPLING_KEYS}


def sanitize_model_id(text: str) -> str:
    """Jan's `sanitizeModelId`: delete characters outside `[A-Za-z0-9/_.-]`, then `.` -> `_`."""
    return _NOT_JAN.sub("", text).replace(".", "_")


def _stem(filename: str) -> str:
    return filename[:-5] if filename.lower().endswith(".gguf") else filename


def id_for_file(filename: str) -> str:
    """A local import's id, as Jan's import gives it: the sanitized file stem."""
    return sanitize_model_id(_stem(Path(filename).name)).strip("/") or "model"


def id_for_hf(author: str, filename: str) -> str:
    """A Hugging Face download's id, as Jan's hub gives it: `<author>/<sanitized stem>`."""
    author = sanitize_model_id(author).strip("/")
    stem = id_for_file(filename).replace("/", "")
    return f"{author}/{stem}" if author else stem


def free_jan_id(models_dir: Path, base: str) -> str:
    """`base`, else `base-2`, `base-3`, ...: the first whose folder does not exist yet."""
    if not is_valid_jan_id(base):
        raise InvalidRequest(
            f"'{base[:80]}' cannot be a Jan model id: Jan's ids use letters, digits, '/', '_', "
            "'-' and '.', with no empty, '.' or '..' part. Give another id.",
            param="id",
        )
    n, candidate = 1, base
    while (models_dir / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def display_name(info: GGUFInfo | None, filename: str) -> str:
    """Jan's `name`: GGUF `general.name` with whitespace replaced by `-`, else the file stem."""
    if info is not None and info.name and info.name.strip():
        return re.sub(r"\s+", "-", info.name.strip())
    return _stem(Path(filename).name)


def is_embedding(info: GGUFInfo | None) -> bool:
    """Jan's `detectEmbeddingFromGgufMeta`: an embedding architecture, 'embed' in its name,
    or a `<arch>.pooling_type` above 0."""
    if info is None:
        return False
    arch = info.architecture
    if arch in EMBEDDING_ARCHS or "embed" in arch.lower():
        return True
    raw = info.metadata.get(f"{arch}.pooling_type")
    try:
        return not isinstance(raw, bool) and float(raw) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


@dataclass
class Known:
    """What a download checked of one file (Hugging Face's LFS sha256 and size)."""

    sha256: str | None = None
    size: int | None = None


def build_model_yml(
    data_dir: Path,
    model: Path,
    mmproj: Path | None,
    *,
    name_from: str,
    model_known: Known | None = None,
    mmproj_known: Known | None = None,
) -> dict[str, Any]:
    """The mapping Jan's import writes, in its key order, for files already in place (`model`
    inside the data folder is written relative to it; a linked file outside, absolute)."""
    info = read_gguf_header(model)
    data: dict[str, Any] = {"model_path": _path_value(data_dir, model)}
    if mmproj is not None:
        data["mmproj_path"] = _path_value(data_dir, mmproj)
    data["name"] = display_name(info, name_from)
    data["size_bytes"] = model.stat().st_size + (mmproj.stat().st_size if mmproj else 0)
    for prefix, known in (("model", model_known), ("mmproj", mmproj_known)):
        if known is not None and known.sha256:
            data[f"{prefix}_sha256"] = known.sha256
        if known is not None and known.size is not None:
            data[f"{prefix}_size_bytes"] = known.size
    embedding = is_embedding(info)
    data["embedding"] = embedding
    data["embedding_check_v"] = EMBEDDING_CHECK_V
    if embedding:
        data.update(pooling="mean", ubatch_size=2048, batch_size=2048)
    return data


def _path_value(data_dir: Path, path: Path) -> str:
    real_data = os.path.realpath(data_dir)
    real = os.path.realpath(path.parent)
    if real == real_data or real.startswith(real_data.rstrip("/") + "/"):
        return relative_path(data_dir, path)
    return str(path)


def place_model(
    models_dir: Path,
    model_id: str,
    model: Path,
    mmproj: Path | None,
    *,
    mode: str,
    name_from: str,
    known: Sequence[Known | None] = (),
    extra: dict[str, Any] | None = None,
    copy: Callable[[Path, Path], None] | None = None,
) -> Path:
    """Put `model` (+ `mmproj`) in Jan's layout under `<models_dir>/<model_id>/` and write
    model.yml last. `mode`: "copy", "move" (a rename; a copy then unlink across disks) or
    "link" (the file stays where it is; model.yml names it by its absolute path, as Jan's
    import does); `copy` makes a copy (the importer's: a hard link where it can, progress).
    Returns the model.yml written. On failure nothing that looks like a model is
    left: the files placed go back (move) or away (copy), the folder is removed."""
    data_dir = models_dir.parent.parent
    folder = models_dir / model_id
    _check_parents(models_dir, model_id)
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        raise Conflict(
            f"llamacpp/models/{model_id} already exists. Choose another id, or delete that model "
            "first."
        ) from None
    placed: list[tuple[Path, Path]] = []
    marker = folder / PLACING
    try:
        _write_marker(marker, [])
        targets: list[Path] = []
        for source, name in ((model, MODEL_FILE), (mmproj, MMPROJ_FILE)):
            if source is None:
                continue
            if mode == "link":
                targets.append(Path(os.path.abspath(source)))
                continue
            target = folder / name
            if mode == "move":  # said before the move, so a crash can put the file back
                _write_marker(marker, [*placed, (source, target)])
            if mode == "copy":
                (copy or _plain_copy)(source, target)
            else:
                _transfer(source, target)
            placed.append((source, target))
            targets.append(target)
        kinds = [*known, None, None]
        data = build_model_yml(
            data_dir,
            targets[0],
            targets[1] if mmproj is not None else None,
            name_from=name_from,
            model_known=kinds[0],
            mmproj_known=kinds[1],
        )
        data.update(extra or {})
        write_model_yml(folder / MODEL_YML, data)  # last: now it is a model
        marker.unlink()
    except BaseException:
        for source, target in placed:
            with contextlib.suppress(OSError):
                if mode == "move" and not source.exists():
                    _transfer(target, source)
        shutil.rmtree(folder, ignore_errors=True)
        remove_empty_parents(models_dir, folder.parent)
        raise
    return folder / MODEL_YML


def check_new_id(models_dir: Path, model_id: str) -> None:
    """Conflict unless a new model can be placed under `model_id` (see `_check_parents`)."""
    _check_parents(models_dir, model_id)
    if os.path.lexists(models_dir / model_id):
        raise Conflict(
            f"A model '{model_id}' already exists. Pick another id, or remove it first "
            f"(`hearth models rm {model_id}`)."
        )


def _check_parents(models_dir: Path, model_id: str) -> None:
    """The folders above a nested id's must be plain folders Jan walks into: not a link (the
    model would land outside `llamacpp/models`), not a file, not a model's own folder (Jan
    never looks inside one, so the model would never be listed)."""
    if not is_valid_jan_id(model_id):
        raise InvalidRequest(f"'{model_id[:80]}' is not a Jan model id.", param="id")
    here = models_dir
    for part in model_id.split("/")[:-1]:
        here = here / part
        if not os.path.lexists(here):
            return
        if here.is_symlink() or not here.is_dir() or (here / MODEL_YML).exists():
            raise Conflict(
                f"llamacpp/models/{here.relative_to(models_dir).as_posix()} is a model, a file or "
                f"a link, so '{model_id}' cannot be placed inside it. Choose another id."
            )


def _write_marker(marker: Path, moves: list[tuple[Path, Path]]) -> None:
    """Hearth's note in a folder it is filling: its pid, and the files it moved in (to go
    back where they came from if it dies before model.yml is written; `sweep_placing`)."""
    body = {"pid": os.getpid(), "moved": [[str(a), str(b)] for a, b in moves]}
    atomic.write_json(marker, body)


def sweep_placing(models_dir: Path) -> None:
    """After a crash mid-placement: a folder with Hearth's marker and no model.yml, whose
    writer is gone, gets its moved files put back (a pull's staging, the user's file) and is
    removed; nothing Jan wrote carries the marker, so nothing of Jan's is touched."""
    try:  # the whole list first: folders go away below
        markers = list(models_dir.glob(f"**/{PLACING}"))
    except OSError:
        return
    for marker in markers:
        folder = marker.parent
        if marker.is_symlink():
            continue
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            note = json.loads(marker.read_text(encoding="utf-8"))
            if atomic.writer_alive(int(note["pid"])):
                continue
            if (folder / MODEL_YML).exists():
                marker.unlink()
                continue
            for original, target in note["moved"]:
                ours = Path(target).parent == folder and Path(target).name in OUR_FILES
                if ours and not os.path.lexists(original):
                    with contextlib.suppress(OSError):
                        _transfer(Path(target), Path(original))
            shutil.rmtree(folder, ignore_errors=True)
            remove_empty_parents(models_dir, folder.parent)


def _plain_copy(source: Path, target: Path) -> None:
    temp = target.with_name(f".{target.name}.copying")
    shutil.copyfile(source, temp)
    os.rename(temp, target)


def _transfer(source: Path, target: Path) -> None:
    """Move one file: a rename; across disks a copy to a temp name, renamed, then the
    original removed (a crash leaves no half file under the final name)."""
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    _plain_copy(source, target)
    source.unlink()


def remove_empty_parents(models_dir: Path, folder: Path) -> None:
    """Remove `folder` and its parents up to (not including) `models_dir` while empty: a
    nested id's `unsloth/` goes with its last model, as Jan leaves none."""
    root = os.path.realpath(models_dir)
    here = folder
    while os.path.realpath(here).startswith(root + "/"):
        try:
            here.rmdir()
        except OSError:
            return
        here = here.parent


def delete_model(models_dir: Path, state_dir: Path, folder: Path) -> None:
    """Remove a Jan model's whole folder: renamed aside into Hearth's own folder first (so a
    crash leaves nothing Jan's walk would take for a model), then removed. A file model.yml
    names outside the folder (a linked import: the user's own file) is never touched."""
    trash = state_dir / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    aside = trash / f"{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, aside)
    except OSError:  # another disk: model.yml first, so it stops being a model at once
        (folder / MODEL_YML).unlink(missing_ok=True)
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)
    remove_empty_parents(models_dir, folder.parent)


def sweep_trash(state_dir: Path) -> None:
    """Finish deletes a crash interrupted."""
    trash = state_dir / TRASH_DIR
    with contextlib.suppress(OSError):
        for path in trash.iterdir():
            shutil.rmtree(path, ignore_errors=True)


def jan_patch(patch: dict[str, Any]) -> dict[str, Any]:
    """A model.json-shaped edit as model.yml keys: `name`, `engine_parameters.ctx_len` ->
    `ctx_size`, `ngl` -> `n_gpu_layers` (and the reader's other engine keys), sampling
    `model_parameters` under Jan's names. A field Jan has no key for is refused, naming it
    (Jan's model.yml has no place for Hearth's other settings)."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "name":
            if (
                not isinstance(value, str)
                or not value.strip()
                or len(value) > 256
                or "\x00" in value
            ):
                raise InvalidRequest(
                    "'name' must be a text of 1 to 256 characters (Jan shows it as the model's "
                    "name).",
                    param="name",
                )
            out["name"] = value
        elif key in ("engine_parameters", "model_parameters") and isinstance(value, dict):
            table = ENGINE_TO_JAN if key == "engine_parameters" else SAMPLING_TO_JAN
            for sub, item in value.items():
                if sub not in table:
                    _refuse(f"{key}.{sub}", table)
                out[table[sub]] = _jan_value(table[sub], item, f"{key}.{sub}")
        elif key != "id":
            _refuse(key, {})
    return out


#: model.yml keys by the type Jan writes (a client's "4096" or 4096.0 is written as 4096).
_YML_INTS = ("ctx_size", "n_gpu_layers", "parallel", "batch_size", "ubatch_size", "top_k",
             "repeat_last_n")  # fmt: skip
_YML_BOOLS = ("embedding", "cont_batching")
_YML_TEXTS = ("pooling", "cache_type_k", "cache_type_v")
_FLASH_ATTN = {True: "on", False: "off", "on": "on", "off": "off", "true": "on", "false": "off"}


def _jan_value(yml_key: str, value: Any, field: str) -> Any:
    """A client's value in the type Jan's model.yml holds for `yml_key` (None: remove the
    key); a value that is not one is refused naming the field and what it takes."""
    if value is None:
        return None
    if yml_key == "chat_template":
        return _template_body(value, field)
    if yml_key == "flash_attn":
        key = value.strip().lower() if isinstance(value, str) else value
        if isinstance(key, (bool, str)) and key in _FLASH_ATTN:
            return _FLASH_ATTN[key]
        raise InvalidRequest(f'\'{field}\' must be "on" or "off" (Jan\'s model.yml).', param=field)
    try:
        if yml_key in _YML_INTS:
            return _coerce_int(value)
        if yml_key in _YML_BOOLS:
            return _coerce_bool(value)
        if yml_key in _YML_TEXTS:
            if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,32}", value):
                return value
            raise ValueError("a short name like q8_0 or mean")
        return _coerce_float(value)
    except ValueError as exc:
        raise InvalidRequest(f"'{field}' must be {exc}.", param=field) from None


def _coerce_int(value: Any) -> int:
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        with contextlib.suppress(ValueError, OverflowError):
            number = float(value)
            if number.is_integer():
                return int(number)
    raise ValueError("a whole number")


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("true or false")


def _coerce_float(value: Any) -> float:
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        with contextlib.suppress(ValueError):
            number = float(value)
            if number == number and abs(number) != float("inf"):
                return number
    raise ValueError("a number")


def _template_body(value: Any, field: str) -> str:
    """Only a Jinja body, as Jan's UI saves it: a path would make the reader load a file
    (`settings.json` holds API keys in older builds), so a template file is named in
    model.yml by the user's own hand, never through an edit."""
    if isinstance(value, str) and "{" in value and "\x00" not in value:
        return value
    raise InvalidRequest(
        f"'{field}' must be the chat template itself (Jinja text, like Jan's model settings "
        "take), not a file name or path. To use a template file, write its path into the "
        "model's model.yml yourself.",
        param=field,
    )


def _refuse(field: str, table: dict[str, str]) -> None:
    allowed = ", ".join(sorted(table)) if table else "name, engine_parameters, model_parameters"
    raise InvalidRequest(
        f"'{field}' has no place in Jan's model.yml, so it cannot be set on a model Jan keeps. "
        f"Editable here: {allowed}.",
        param=field,
    )


def update_model_yml(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Rewrite model.yml atomically from the whole mapping read: the changed keys take their
    new values (a null removes the key, as a merge patch does), every other key and the order
    stay. Returns the mapping written."""
    data = read_model_yml(path)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    write_model_yml(path, data)
    return data
