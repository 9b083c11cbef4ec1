"""Replace a file atomically: the one way Hearth rewrites a file that must never be half written.

The bytes go to a hidden temp file in the same folder (a rename across file systems is not
atomic), created with O_EXCL (a planted file or link at the temp name is never written through),
with the mode the caller asks for (0o600 for anything secret; the umask may only take bits
away); then fsync, `os.replace` over the target, and fsync of the folder so the rename itself
survives a power cut. A crash at any point leaves the old file or the new one, never a mix; a
failure removes the temp file and leaves the old file as it was.

The temp name is `.<target>.<pid>.<8 hex>.tmp`: hidden, recognisable as the temp of one target
(`is_temp_of`), and carrying the writer's pid so a start-up sweep can tell a kill -9 leftover
from a file another live process is writing now (`parse_temp`). When that name would pass the
file system's 255-byte limit (a download's `<name>.part.json` may be 245 bytes long), the
target's name is replaced by the first 16 hex digits of its sha256.

`durable=False` skips both fsyncs, for files where losing the last write after a power cut
costs nothing (a cache, a download's progress sidecar written every second on the event loop):
the rename stays atomic, so a reader still sees the old file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from hearth.core.errors import InsufficientStorage

NAME_MAX_BYTES = 255
DEFAULT_MODE = 0o666  # what open() creates with: the umask decides, as for any new file
_FULL = (errno.ENOSPC, errno.EDQUOT)
_TEMP = re.compile(r"\.(?P<stem>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.tmp")


def temp_name(target: str) -> str:
    """A fresh hidden temp name for `target` (see the module doc for its shape)."""
    tail = f".{os.getpid()}.{os.urandom(4).hex()}.tmp"
    name = f".{target}{tail}"
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        name = f".{_short(target)}{tail}"
    return name


def _short(target: str) -> str:
    return hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_temp_of(name: str, target: str) -> bool:
    """Whether `name` has exactly the shape of a temp file `temp_name(target)` makes."""
    found = _TEMP.fullmatch(name)
    if found is None:
        return False
    if found["stem"] == target:
        return True
    full = f".{target}.{found['pid']}.00000000.tmp"  # the short form only stands for a long name
    return found["stem"] == _short(target) and len(full.encode("utf-8", "surrogatepass")) > 255


def parse_temp(name: str) -> tuple[str, int] | None:
    """(the target's name or its hash, the writer's pid) of a temp name of ours, else None."""
    found = _TEMP.fullmatch(name)
    return (found["stem"], int(found["pid"])) if found is not None else None


def writer_alive(pid: int) -> bool:
    """Whether the process that carries `pid` (a temp name's or a marker's writer) still runs:
    its leftovers are then work in progress, not debris."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_bytes(
    path: Path | str,
    data: bytes,
    *,
    mode: int = DEFAULT_MODE,
    durable: bool = True,
    storage_error: bool = False,
) -> None:
    """Replace `path` with `data` atomically (a link at `path` is replaced, never followed).

    `storage_error`: a full disk raises InsufficientStorage naming the folder (for callers that
    answer a client), instead of the bare OSError (for callers that handle it themselves).
    """
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if storage_error and isinstance(exc, OSError) and exc.errno in _FULL:
            raise InsufficientStorage(
                f"The disk holding {path.parent} is full ({exc.strerror}); {path.name} was "
                "left as it was. Free some space and try again."
            ) from None
        raise
    if durable:
        sync_folder(path.parent)


def write_text(
    path: Path | str,
    text: str,
    *,
    mode: int = DEFAULT_MODE,
    durable: bool = True,
    storage_error: bool = False,
) -> None:
    """`write_bytes` of `text` in UTF-8."""
    data = text.encode("utf-8")
    write_bytes(path, data, mode=mode, durable=durable, storage_error=storage_error)


def write_json(
    path: Path | str,
    value: Any,
    *,
    indent: int | None = None,
    compact: bool = False,
    newline: bool = False,
    ascii_only: bool = False,
    mode: int = DEFAULT_MODE,
    durable: bool = True,
    storage_error: bool = False,
) -> None:
    """`write_text` of `value` as JSON (UTF-8; `ascii_only` escapes the rest as \\uXXXX);
    `compact` drops the spaces after separators, `newline` ends the text with one.

    The value is encoded before any file is touched: a value JSON cannot hold raises
    TypeError/ValueError and leaves no temp file behind.
    """
    separators = (",", ":") if compact else None
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only, separators=separators)
    if newline:
        text += "\n"
    write_text(path, text, mode=mode, durable=durable, storage_error=storage_error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it is on disk; skipped where the OS cannot (Windows, some
    network file systems answer EINVAL)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)
