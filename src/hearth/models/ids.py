"""The model id grammar: validate ids before they touch the disk, derive ids from file names.

An id is also a folder name under models/, so the grammar is what keeps a request from
escaping the home folder: letters, digits, `.`, `_`, `-`; 1 to 128 characters; not starting
with `.` (which also rules out `.` and `..`).

A model Jan keeps (`llamacpp/models/<id>/model.yml`) has Jan's id, which may nest
(`unsloth/Qwen3-4B-Instruct-2507-Q4_K_M`): Jan's import rule, `^[a-zA-Z0-9/_\\-.]+$` with no
empty, `.` or `..` segment, so it is never absolute and never leaves `llamacpp/models`; here
each segment must also be a Hearth id (so no hidden folder). That grammar names Jan's models
only: a Hearth folder's name keeps the one above.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hearth.core.errors import InvalidModelId

MAX_ID_LENGTH = 128
_ID_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}")
_BAD_RUN = re.compile(r"[^a-z0-9._\-]+")
_MODEL_EXTENSIONS = (".gguf", ".bin", ".ggml")


#: Jan's ids nest `<author>/<name>`; a few levels more are accepted, never without end.
MAX_JAN_SEGMENTS = 8
MAX_JAN_ID_LENGTH = MAX_JAN_SEGMENTS * (MAX_ID_LENGTH + 1) - 1
#: A Hearth id or a Jan id, as a regular expression (the API's documented model id).
ANY_ID_PATTERN = f"{_ID_RE.pattern}(/{_ID_RE.pattern}){{0,{MAX_JAN_SEGMENTS - 1}}}"


def is_valid_id(model_id: str) -> bool:
    return bool(_ID_RE.fullmatch(model_id))


def is_valid_jan_id(model_id: str) -> bool:
    """Jan's import rule (`[A-Za-z0-9/_-.]`, no empty, `.` or `..` segment: so no leading or
    trailing `/`, no `//`, no way up), each segment also a Hearth id (not starting with `.`,
    at most 128 characters: hidden folders are not models), at most 8 segments."""
    parts = model_id.split("/")
    return len(parts) <= MAX_JAN_SEGMENTS and all(_ID_RE.fullmatch(p) for p in parts)


def is_any_id(model_id: str) -> bool:
    """A Hearth id or a Jan id: what a request may name."""
    return is_valid_id(model_id) or is_valid_jan_id(model_id)


def validate_any_id(model_id: str) -> str:
    """Return the id unchanged if it is a Hearth id or a Jan id, else InvalidModelId."""
    if is_any_id(model_id):
        return model_id
    return validate_model_id(model_id)


def validate_model_id(model_id: str) -> str:
    """Return the id unchanged, or raise InvalidModelId explaining the grammar."""
    if is_valid_id(model_id):
        return model_id
    shown = model_id if len(model_id) <= 60 else model_id[:57] + "..."
    raise InvalidModelId(
        f"'{shown!s}' is not a valid model id. Ids use only letters, digits, '.', '_' and '-', "
        f"are 1 to {MAX_ID_LENGTH} characters long and do not start with '.'.",
        param="model",
    )


def id_from_filename(filename: str) -> str:
    """Derive an id from a file name: lower-case, extension dropped, other characters -> '-'."""
    stem = filename
    lowered = stem.lower()
    for ext in _MODEL_EXTENSIONS:
        if lowered.endswith(ext):
            stem = stem[: -len(ext)]
            break
    candidate = _BAD_RUN.sub("-", stem.lower()).strip("-.")
    candidate = re.sub(r"-{2,}", "-", candidate)
    candidate = candidate[:MAX_ID_LENGTH].rstrip("-.")
    return candidate or "model"


def unique_id(base: str, taken: Callable[[str], bool]) -> str:
    """`base`, else `base-2`, `base-3`, ... whichever is free first."""
    if not taken(base):
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[: MAX_ID_LENGTH - len(suffix)] + suffix
        if not taken(candidate):
            return candidate
        n += 1


def readable_name(filename: str) -> str:
    """A human name from a file name: 'mistral-7b.Q4_K_M.gguf' -> 'Mistral 7b Q4_K_M'."""
    stem = filename
    for ext in _MODEL_EXTENSIONS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    words = [w for w in re.split(r"[\s\-.]+", stem) if w]
    return " ".join(w if any(c.isupper() for c in w[1:]) else w[:1].upper() + w[1:] for w in words)
