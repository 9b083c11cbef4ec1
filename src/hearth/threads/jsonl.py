"""messages.jsonl, line by line: read tolerantly, append whole lines, rewrite atomically.

Real files hold lines that do not parse (a crash mid-write, a hand edit). Each line is kept as
its original bytes: a rewrite (edit, delete) writes every line it did not change byte for byte,
unparseable ones included, so unknown fields, key order and spacing survive. An append first
ends a last line that has no newline (a writer that died mid-line), so the new message never
joins a broken one. Callers hold the thread's lock (`ThreadStore.locked`).

A thread folder may come from a stranger, so a file's name is not proof that the bytes are the
thread's alone: a messages.jsonl with other hard links is never appended to in place (that
would write into the linked file, wherever it lives) but rewritten atomically, which leaves the
other name with its bytes. A crash mid-rewrite leaves a temp file; `remove_stale_temps` takes
those, and only those, back.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core import atomic
from hearth.core.errors import InsufficientStorage, InvalidRequest

#: A messages.jsonl (or thread.json) larger than this is refused rather than read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class Line:
    """One line of messages.jsonl: its bytes (no newline) and, when it is a JSON object, that
    object. `number` counts from 1, for messages that name the line."""

    number: int
    raw: bytes
    data: dict[str, Any] | None


def dumps(message: dict[str, Any]) -> bytes:
    """One message as one line: compact JSON (never a newline inside: JSON escapes them)."""
    return encode(message)


def encode(value: Any, *, indent: int | None = None) -> bytes:
    """Strict JSON that any reader (Jan, a browser) parses, whatever a file or a body held:
    NaN and infinities (which Python's json reads) become null, and a lone surrogate (which
    UTF-8 cannot hold) is written as its \\u escape."""
    separators = None if indent else (",", ":")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent,
                          separators=separators)  # fmt: skip
    except ValueError:  # NaN or an infinity somewhere
        value = _finite(value)
        text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, indent=indent, separators=separators).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_bytes(path: Path) -> bytes | None:
    """A regular file's bytes (None if absent). A FIFO, device or huge file is refused: reading
    one would block forever or exhaust memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidRequest(f"{path.name} in thread folder {path.parent.name} is not a file.")
        if st.st_size > MAX_FILE_BYTES:
            raise _too_big(path, st.st_size)
        return fh.read()


def _too_big(path: Path, size: int) -> InvalidRequest:
    return InvalidRequest(
        f"{path.parent.name}/{path.name} is {size} bytes, more than Hearth reads "
        f"({MAX_FILE_BYTES}); split the conversation by hand."
    )


def parse(data: bytes) -> list[Line]:
    """Every line of the file; `data` None for a line that is not a JSON object. A trailing
    blank line (the newline ending the last line) is not a line."""
    lines: list[Line] = []
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    for number, raw in enumerate(chunks, 1):
        parsed: Any = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except (ValueError, RecursionError):
                parsed = None
        lines.append(Line(number, raw, parsed if isinstance(parsed, dict) else None))
    return lines


def append(path: Path, messages: Iterable[dict[str, Any]]) -> None:
    """Add whole lines at the end, in one write, synced. A file with other hard links is
    rewritten whole instead (`write_atomic`): an append in place would write through the link
    into a file that may lie outside the threads folder."""
    payload = b"".join(dumps(m) + b"\n" for m in messages)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:  # a link (refused by O_NOFOLLOW), a folder...
        raise InvalidRequest(
            f"{path.parent.name}/{path.name} cannot be written ({exc.strerror}); make it a "
            "plain file."
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device swallow the lines
            raise InvalidRequest(
                f"{path.parent.name}/{path.name} is not a plain file; Hearth writes only "
                "plain files."
            )
        if st.st_nlink > 1:
            shared: bytes | None = _read_all(fd, path)
        else:
            shared = None
            tail = os.pread(fd, 1, st.st_size - 1) if st.st_size else b""
            _write_all(fd, _end_torn_line(tail) + payload, path)
            os.fsync(fd)
    finally:
        os.close(fd)
    if shared is not None:  # our own file replaces the link; the linked file keeps its bytes
        write_atomic(path, shared + _end_torn_line(shared) + payload)


def _end_torn_line(tail: bytes) -> bytes:
    """The newline that ends a torn last line (a writer that died mid-line), so an appended
    message never joins it; the torn line itself stays as it was."""
    return b"\n" if tail and not tail.endswith(b"\n") else b""


def _read_all(fd: int, path: Path) -> bytes:
    """The whole file behind `fd` (open for append, so read by offset), bounded like
    `read_bytes`: it is held in memory for the rewrite."""
    chunks: list[bytes] = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        offset += len(chunk)
        if offset > MAX_FILE_BYTES:
            raise _too_big(path, os.fstat(fd).st_size)
        chunks.append(chunk)
    return b"".join(chunks)


def rewrite(path: Path, lines: Iterable[Line]) -> None:
    """Replace the file with `lines` (unchanged ones byte for byte): a temp file in the same
    folder, fsync, rename, fsync the folder. A crash leaves the old file or the new one."""
    payload = b"".join(line.raw + b"\n" for line in lines)
    write_atomic(path, payload)


def write_atomic(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` by rename: a link (hard or symbolic) at `path` is replaced,
    never written through. Durable, mode 0o644, a full disk is InsufficientStorage; the temp
    file is named as `is_temp_of` knows it (`hearth.core.atomic`)."""
    atomic.write_bytes(path, payload, mode=0o644, storage_error=True)


def _write_all(fd: int, payload: bytes, path: Path) -> None:
    """Write all of `payload` at the file's position (the append path)."""
    view = memoryview(payload)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                f"The disk holding {path.parent} is full ({exc.strerror}); {path.name} was left "
                "as it was. Free some space and try again."
            ) from None
        raise


def is_temp_of(name: str, target: str) -> bool:
    """Whether `name` is exactly the shape of a temp file `write_atomic` makes for a file named
    `target` (`.<target>.<pid>.<8 hex>.tmp`); a sweep removes nothing else."""
    return atomic.is_temp_of(name, target)


def remove_stale_temps(folder: Path, targets: Iterable[str], older_than: float) -> list[str]:
    """Remove the temp files of `targets` that a crashed rewrite left in `folder`: plain files
    of our exact temp-name shape, last written more than `older_than` seconds ago (a younger
    one may be a concurrent writer's, about to be renamed). Links, folders and every other
    name are left alone; a file that cannot be removed is skipped. The names removed."""
    names = tuple(targets)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    removed: list[str] = []
    for entry in entries:
        if not any(is_temp_of(entry.name, target) for target in names):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: never fatal to the write
    return removed
