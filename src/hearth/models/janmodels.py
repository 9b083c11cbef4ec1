"""Jan's models (`<data>/llamacpp/models/<id>/model.yml`, Jan 0.6 to 0.8) read as store entries.

Jan finds its models by walking `llamacpp/models` depth-first: a folder that directly holds a
`model.yml` is a model whose id is its path below `models/` (so ids nest:
`unsloth/Qwen3-4B-Instruct-2507-Q4_K_M`), and Jan never looks inside it; other folders are
walked into; what cannot be read is skipped. Hearth walks the same way, so the id Jan shows is
the id every client uses.

Each model.yml becomes a `ModelEntry` whose `ModelInfo` says, in model.json's own words, what
the file means (`JAN_ENGINE_KEYS`, `JAN_SAMPLING_KEYS`): nothing here is a new way for a file to
pick an engine flag, and the planner checks the result as it checks any model.json's
`engine_parameters` (untrusted). Paths (`model_path`, `mmproj_path`) are relative to the data
folder or absolute: Jan's imports point at the user's file where it lies, and Jan wrote that
path because the user picked the file, so it is used in place as a `--mode link` import is, but
only a regular file that starts with the GGUF signature (never a device, a FIFO, a folder, or
a file whose bytes anyone could read back through an error: none is ever quoted).

Jan's llama.cpp settings (`llamacpp/settings.json`, an array of `{key, controllerProps:
{value}}`) are read through `SETTINGS_MAP`, a whitelist of typed tuning keys; everything else
(`llamacpp_env`, devices, paths, versions) is ignored, and a bad file is logged and skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.core.strangefile import read_regular
from hearth.models.ids import is_valid_jan_id
from hearth.models.janyml import MODEL_YML, ModelYmlError, read_model_yml, resolve_path
from hearth.models.schema import DEFAULT_ENGINE, EngineRules

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SETTINGS_FILE = "settings.json"
#: Jan's llama.cpp settings file is a few KiB; anything far larger is not Jan's.
MAX_SETTINGS_BYTES = 1 << 20
#: A chat template file named by model.yml: bounded like Hearth's own templates.
MAX_TEMPLATE_BYTES = 256 * 1024
#: Nested ids are `<author>/<name>`; deeper trees are walked, but not without end.
MAX_DEPTH = 8
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

#: model.yml key -> engine_parameters key (Hearth's model.json name for the same setting).
JAN_ENGINE_KEYS = {
    "ctx_size": "ctx_len",
    "n_gpu_layers": "ngl",
    "embedding": "embedding",
    "pooling": "pooling",
    "flash_attn": "flash_attn",
    "cache_type_k": "cache_type_k",
    "cache_type_v": "cache_type_v",
    "parallel": "n_parallel",
    "cont_batching": "cont_batching",
}
#: model.yml keys that are sampling defaults: model_parameters under the same name.
JAN_SAMPLING_KEYS = (
    "temperature", "top_k", "top_p", "min_p", "repeat_last_n", "repeat_penalty",
    "presence_penalty", "frequency_penalty",
)  # fmt: skip
#: Keys kept as the model's metadata (what Jan recorded of its download).
JAN_METADATA_KEYS = (
    "size_bytes", "model_sha256", "model_size_bytes", "mmproj_sha256", "mmproj_size_bytes",
)  # fmt: skip
#: Keys that become the engine's `--batch-size`/`--ubatch-size` (extra_args' safe flags).
_BATCH_FLAGS = {"batch_size": "--batch-size", "ubatch_size": "--ubatch-size"}


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a whole number")
    number = float(value) if isinstance(value, str) else value
    if float(number).is_integer():
        return int(number)
    raise ValueError("a whole number")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("true or false")


def _text(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 64:
        return value
    raise ValueError("a short text")


#: Jan's llama.cpp settings Hearth uses -> (engine_parameters key or flag, coercion).
#: A key naming a flag (starting with "-") becomes an `extra_args` entry: only flags from
#: `engines.flags.MODEL_SAFE_FLAGS`. Anything not here is ignored.
SETTINGS_MAP: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ctx_size": ("ctx_len", _int),
    "ctx_len": ("ctx_len", _int),  # older builds
    "n_gpu_layers": ("ngl", _int),
    "ngl": ("ngl", _int),
    "threads": ("cpu_threads", _int),
    "threads_batch": ("--threads-batch", _int),
    "batch_size": ("--batch-size", _int),
    "ubatch_size": ("--ubatch-size", _int),
    "n_predict": ("--n-predict", _int),
    "flash_attn": ("flash_attn", _text),
    "cache_type_k": ("cache_type_k", _text),
    "cache_type_v": ("cache_type_v", _text),
    "parallel": ("n_parallel", _int),
    "cont_batching": ("cont_batching", _bool),
    "no_mmap": ("--no-mmap", _bool),
    "mlock": ("mlock", _bool),
}


@dataclass
class JanFolder:
    """A model folder found by the walk: its id, its folder, and its model.yml's stat key
    (mtime, ctime, size, inode; empty when it cannot be stat-ed), taken by the walk itself."""

    id: str
    path: str
    key: tuple[int, ...] = ()

    @property
    def folder(self) -> Path:
        return Path(self.path)

    @property
    def yml(self) -> Path:
        return Path(self.path + "/" + MODEL_YML)


def yml_key(folder: str) -> tuple[int, ...] | None:
    """model.yml's stat key in `folder`; None when there is none (not a model folder), () when
    it is there but cannot be stat-ed (a dangling link: still a model, listed invalid)."""
    try:
        st = os.stat(folder + "/" + MODEL_YML)
    except FileNotFoundError:
        return () if os.path.lexists(folder + "/" + MODEL_YML) else None
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def walk_models(models_dir: Path) -> Iterator[JanFolder]:
    """Jan's discovery, depth-first in name order: a folder holding model.yml is a model (not
    looked into); others are walked. Unreadable entries, hidden names (`.deleting-*`, temp
    folders) and links to folders (a loop could never end) are skipped. One stat per model
    folder (its model.yml, which the store's cache key needs anyway)."""
    stack: list[tuple[str, str, int]] = [(str(models_dir), "", 0)]
    while stack:
        path, prefix, depth = stack.pop()
        try:
            with os.scandir(path) as it:
                dirs = sorted(
                    (d.name for d in it if d.name[0] != "." and d.is_dir(follow_symlinks=False)),
                    reverse=True,
                )
        except OSError:
            continue
        for name in dirs:
            child = path + "/" + name
            key = yml_key(child)
            if key is not None:
                yield JanFolder(prefix + name, child, key)
            elif depth + 1 < MAX_DEPTH:
                stack.append((child, prefix + name + "/", depth + 1))


def walk_sorted(models_dir: Path) -> list[JanFolder]:
    """`walk_models`, in id order (the walk's own order is depth-first, by name)."""
    return sorted(walk_models(models_dir), key=lambda f: f.id)


class JanModelError(ValueError):
    """A model.yml that cannot be served: the message names the file, the field and the fix."""


def check_gguf(path: Path, shown: str, field: str) -> None:
    """JanModelError unless `path` is a regular file starting with the GGUF signature. Opened
    non-blocking and checked as a regular file first (a FIFO or a device never blocks or
    streams); its bytes are compared, never quoted."""
    fix = "Point it at a .gguf model file, or delete the model in Jan and add it again."
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise JanModelError(
                f"{shown}: '{field}' names {path}, which is not a regular file (a folder, FIFO "
                f"or device). {fix}"
            )
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            magic = os.read(fd, 4) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise JanModelError(
            f"{shown}: '{field}' names {path}, which does not exist. {fix}"
        ) from None
    except OSError as exc:
        raise JanModelError(
            f"{shown}: '{field}' names {path}, which cannot be read ({exc.strerror}). {fix}"
        ) from None
    if magic != GGUF_MAGIC:
        raise JanModelError(
            f"{shown}: '{field}' names {path}, which is not a GGUF model (it does not start "
            f"with the GGUF signature). {fix}"
        )


def read_llamacpp_settings(path: Path, rules: EngineRules) -> dict[str, Any]:
    """Jan's llama.cpp settings as an engine_parameters layer, through `SETTINGS_MAP` only.
    A missing file is no settings; a bad file, or a bad value, is logged and left out."""
    try:
        raw = read_regular(path, MAX_SETTINGS_BYTES)  # a FIFO here would block the server
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("ignoring %s: it cannot be read (%s)", path, exc.strerror)
        return {}
    try:
        if len(raw) > MAX_SETTINGS_BYTES:
            raise ValueError("larger than 1 MiB")
        items = json.loads(raw.decode("utf-8"))
        if not isinstance(items, list):
            raise ValueError("not an array of settings")
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring Jan's llama.cpp settings %s: %s", path, str(exc)[:200])
        return {}
    layer: dict[str, Any] = {}
    extra: list[str] = []
    for item in items:
        key, value = _setting(item)
        target = SETTINGS_MAP.get(key) if key else None
        if target is None:
            continue  # not a tuning key Hearth uses (llamacpp_env, device, paths...)
        name, coerce = target
        try:
            coerced = coerce(value)
        except ValueError as exc:
            log.warning("ignoring Jan's llama.cpp setting %r in %s: not %s", key, path, exc)
            continue
        if name.startswith("-"):
            extra += _flag(name, coerced)
        else:
            layer[name] = coerced
    if extra:
        layer["extra_args"] = extra
    return _checked_settings(layer, path, rules)


def _setting(item: Any) -> tuple[str | None, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        return None, None
    props = item.get("controllerProps")
    if not isinstance(props, dict) or "value" not in props:
        return None, None
    return item["key"], props["value"]


def _flag(flag: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag] if value else []
    if flag in ("--threads-batch", "--n-predict") and value <= 0:
        return []  # Jan's -1 / 0: llama.cpp's own choice, its default
    return [flag, str(value)]


def _checked_settings(layer: dict[str, Any], path: Path, rules: EngineRules) -> dict[str, Any]:
    """Each value as the engine checks a model.json's (untrusted): a bad one is left out with
    a warning, the rest kept. `ctx_len` 0 and `ngl` below -1 mean "the model's own" in Jan:
    left out, so Hearth's defaults apply."""
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if _means_default(key, value):
            continue
        try:
            rules.check_model_parameters(DEFAULT_ENGINE, {key: value})
        except InvalidParameter as exc:
            log.warning("ignoring a Jan llama.cpp setting in %s: %s", path, exc.message)
            continue
        out[key] = value
    return out


def _means_default(key: str, value: Any) -> bool:
    """Jan's values for "llama.cpp decides": context 0 (the model's own), offload -2 (auto)."""
    return (
        (key == "ctx_len" and value == 0)
        or (key == "ngl" and value < -1)
        or (key == "n_parallel" and value == 0)
    )


@dataclass
class JanModel:
    """What one model.yml means: model.json's fields (`raw`, for `schema.normalize`), the files
    it names (checked regular GGUF files) and the file itself as read (`yml`)."""

    raw: dict[str, Any]
    yml: dict[str, Any]
    files: list[Path]


def read_jan_model(
    data_dir: Path,
    found: JanFolder,
    defaults: dict[str, Any],
    rules: EngineRules,
    yml: dict[str, Any] | None = None,
) -> JanModel:
    """Read one model.yml into model.json's terms; JanModelError names the file, the field
    and the fix (a file that cannot be read, a missing or bad `model_path`, a bad value).
    `yml`: a mapping to check instead of the file's (an edit, before it is written)."""
    shown = _rel(data_dir, found.yml)
    if yml is None:
        try:
            yml = read_model_yml(found.yml)
        except ModelYmlError as exc:
            raise JanModelError(str(exc).replace(str(found.yml), shown, 1)) from None
    files = [_model_file(data_dir, yml, "model_path", shown)]
    params = dict(defaults)
    if yml.get("mmproj_path") not in (None, ""):
        mmproj = _model_file(data_dir, yml, "mmproj_path", shown)
        files.append(mmproj)
        params["mmproj"] = _mmproj_param(files[0], mmproj, shown)
    own = _engine_params(yml, shown)
    if "extra_args" in own and "extra_args" in params:  # the model's flags after (they win)
        own["extra_args"] = [*params["extra_args"], *own["extra_args"]]
    params |= own
    template = _chat_template(data_dir, found.yml.parent, yml.get("chat_template"), shown)
    if template is not None:
        params["chat_template"] = template
    try:
        rules.check_model_parameters(DEFAULT_ENGINE, params)
    except InvalidParameter as exc:
        jan_key = next((k for k, v in JAN_ENGINE_KEYS.items() if v == exc.param), None)
        where = f"'{jan_key}' (Hearth's {exc.param}) " if jan_key and jan_key != exc.param else ""
        raise JanModelError(f"{shown}: {where}{exc.message}") from None
    name = yml.get("name")
    raw: dict[str, Any] = {
        "id": "jan-model",  # replaced by the Jan id once normalized (`schema` knows one grammar)
        "name": name if isinstance(name, str) and name.strip() else found.id,
        "engine": DEFAULT_ENGINE,
        "engine_parameters": params,
        "model_parameters": _sampling(yml, shown),
        "metadata": {k: yml[k] for k in JAN_METADATA_KEYS if _plain(yml.get(k))},
    }
    return JanModel(raw=raw, yml=yml, files=files)


def _plain(value: Any) -> bool:
    """A size or a hash, as Jan writes them: never a structure (YAML aliases can make a few
    bytes of file into a huge one) or a long text."""
    if isinstance(value, str):
        return len(value) <= 128
    return isinstance(value, int) and not isinstance(value, bool)


def _rel(data_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(data_dir))
    except ValueError:
        return str(path)


def _model_file(data_dir: Path, yml: dict[str, Any], field: str, shown: str) -> Path:
    value = yml.get(field)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise JanModelError(
            f"{shown}: '{field}' is missing or not a path. Set it to the model's .gguf file "
            "(relative to Jan's data folder, like llamacpp/models/<id>/model.gguf, or an "
            "absolute path), or delete the model in Jan and add it again."
        )
    path = resolve_path(data_dir, value)
    check_gguf(path, shown, field)
    return path


def _mmproj_param(model: Path, mmproj: Path, shown: str) -> str:
    """`mmproj` as model.json names it: relative to the model file's folder, inside it."""
    rel = os.path.relpath(mmproj, model.parent)
    if rel.startswith("..") or os.path.isabs(rel):
        raise JanModelError(
            f"{shown}: 'mmproj_path' names {mmproj}, which is not in the folder of the model "
            f"file ({model.parent}). Put the projector beside the model file and point "
            "'mmproj_path' at it."
        )
    return Path(rel).as_posix()


def _engine_params(yml: dict[str, Any], shown: str) -> dict[str, Any]:
    """model.yml's per-model settings under model.json's names (a bad value: JanModelError)."""
    params: dict[str, Any] = {}
    extra: list[str] = []
    for key, target in JAN_ENGINE_KEYS.items():
        if yml.get(key) is None:
            continue
        value = yml[key]
        if target in ("ctx_len", "ngl", "n_parallel"):
            value = _checked(_int, value, key, shown)
            if _means_default(target, value):
                continue
        params[target] = value
    for key, flag in _BATCH_FLAGS.items():
        if yml.get(key) is not None:
            value = _checked(_int, yml[key], key, shown)
            if value > 0:
                extra += [flag, str(value)]
    if extra:
        params["extra_args"] = extra
    return params


def _checked(coerce: Callable[[Any], Any], value: Any, key: str, shown: str) -> Any:
    try:
        return coerce(value)
    except ValueError as exc:
        got = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise JanModelError(f"{shown}: '{key}' is {got}, which is not {exc}; fix it.") from None


def _sampling(yml: dict[str, Any], shown: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in JAN_SAMPLING_KEYS:
        value = yml.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JanModelError(f"{shown}: '{key}' is {str(value)[:60]!r}; set it to a number.")
        out[key] = value
    return out


def _chat_template(data_dir: Path, folder: Path, value: Any, shown: str) -> str | None:
    """A template body as is; a file (a path inside the model's own folder, a regular file,
    bounded: never elsewhere in the data folder, where settings.json may hold API keys) read;
    a built-in name (`chatml`) left to the model's own template (None)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise JanModelError(f"{shown}: 'chat_template' must be text (a template, or its file).")
    if "{" in value or "\n" in value:
        return value  # a Jinja body
    if _TEMPLATE_NAME.fullmatch(value) and "." not in value:
        log.info(
            "%s: chat_template %r is a llama.cpp built-in name; the GGUF's own is used",
            shown,
            value,
        )
        return None
    return _template_file(data_dir, folder, value, shown)


def _template_file(data_dir: Path, folder: Path, value: str, shown: str) -> str:
    path = os.path.realpath(resolve_path(data_dir, value))
    root = os.path.realpath(folder)
    fix = (
        "A chat template file must be a text file in the model's own folder (at most "
        f"{MAX_TEMPLATE_BYTES // 1024} KiB); move it there, or paste the template itself."
    )
    if not (path.startswith(root.rstrip("/") + "/")):
        raise JanModelError(
            f"{shown}: 'chat_template' names a file outside the model's folder. {fix}"
        )
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise JanModelError(f"{shown}: 'chat_template' names {path}, not a regular file. {fix}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
        if len(data) > MAX_TEMPLATE_BYTES:
            raise JanModelError(f"{shown}: 'chat_template' names a file that is too large. {fix}")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        raise JanModelError(
            f"{shown}: 'chat_template' names {path}, which cannot be read as text. {fix}"
        ) from None


def id_problem(model_id: str) -> str | None:
    """Why a folder's path is not an id Jan would accept (Jan's import rule), or None."""
    if is_valid_jan_id(model_id):
        return None
    return (
        f"The folder llamacpp/models/{model_id[:120]} is not a model id Jan accepts (letters, "
        "digits, '/', '_', '-', '.'); rename the folder."
    )
