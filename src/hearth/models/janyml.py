"""Jan's `model.yml` (llamacpp/models/<id>/model.yml, Jan 0.6 to 0.8): read and written as Jan
does, so Jan and Hearth can share one data folder.

Jan writes the file with serde_yaml from a JSON object: a plain mapping of scalars and lists,
keys in order. It keeps keys it does not know, and so does Hearth: a write here always starts
from the whole mapping that was read. Only `yaml.safe_load` ever reads one (no tags, no
objects), bounded in size, and every write is atomic (`hearth.core.atomic`), where Jan's are
not: a crash leaves the old file or the new one.

Paths in it (`model_path`, `mmproj_path`, `mtp_model_path`) are relative to the data folder or
absolute (Jan's imports point at the user's file where it lies): `resolve_path` joins them as
Jan's `PathBuf::join` does, an absolute path winning.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from hearth.core import atomic

MODEL_YML = "model.yml"
#: A model.yml is a few hundred bytes; anything near this is not Jan's.
MAX_MODEL_YML_BYTES = 256 * 1024
#: The keys naming files, relative to the data folder or absolute.
PATH_KEYS = ("model_path", "mmproj_path", "mtp_model_path")


#: libyaml's safe loader when pyyaml has it (the same safe constructors, ~10x faster: the first
#: list of 1,000 Jan models is mostly parsing), else the pure-Python one.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ModelYmlError(ValueError):
    """A model.yml that cannot be read: the message names the problem and the fix."""


def read_model_yml(path: Path) -> dict[str, Any]:
    """The mapping in `path`, or ModelYmlError saying what is wrong with it."""
    try:
        # non-blocking and regular files only: a FIFO or a device named model.yml (or a link
        # to one) never blocks or streams a listing
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ModelYmlError(
                    f"{path} is not a regular file (a FIFO, device or folder); replace it with "
                    "the model's settings file, or delete the model's folder."
                )
            raw = handle.read(MAX_MODEL_YML_BYTES + 1)
    except OSError as exc:
        raise ModelYmlError(f"{path} cannot be read ({exc.strerror}).") from None
    if len(raw) > MAX_MODEL_YML_BYTES:
        raise ModelYmlError(
            f"{path} is larger than {MAX_MODEL_YML_BYTES // 1024} KiB, which no model.yml Jan "
            "writes is; remove what does not belong in it."
        )
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_SAFE_LOADER)  # a safe loader
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ModelYmlError(
            f"{path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}. Fix the "
            "file, or delete the model in Jan and download it again."
        ) from None
    if _shares_nodes(data):
        raise ModelYmlError(
            f"{path} uses YAML anchors or aliases (`&name`, `*name`), which Jan never writes "
            "and which can make a small file into a huge one; write each value out in full."
        )
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ModelYmlError(
            f"{path} must hold a mapping of settings like `model_path: llamacpp/models/<id>/"
            "model.gguf`; fix the file."
        )
    return data


def _shares_nodes(data: Any) -> bool:
    """True when a list or mapping appears twice in `data` (an alias): the walk visits each
    container once, so it is as small as the file, whatever the aliases would expand to."""
    seen: set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if id(node) in seen:
            return True
        seen.add(id(node))
        stack.extend(node.values() if isinstance(node, dict) else node)
    return False


def dump_model_yml(data: dict[str, Any]) -> str:
    """The text Jan would write: block style, keys in the order given, UTF-8 kept."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_model_yml(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` (durable; a full disk is InsufficientStorage)."""
    atomic.write_text(path, dump_model_yml(data), storage_error=True)


def resolve_path(data_dir: Path, value: str) -> Path:
    """A path from model.yml as Jan resolves it: absolute as it is, else under the data folder
    (`data_dir / value`; the caller decides whether where it lands is allowed)."""
    return Path(os.path.join(data_dir, os.path.expanduser(value)))


def relative_path(data_dir: Path, path: Path) -> str:
    """How Jan writes a file inside the data folder: relative to it, with forward slashes."""
    return Path(os.path.relpath(path, data_dir)).as_posix()
