"""messages.jsonl, line by line: read tolerantly, append whole lines, rewrite atomically.

Real files hold lines that do not parse (a crash mid-write, a hand edit). Each line is kept as
its original bytes: a rewrite (edit, delete) writes every line it did not change byte for byte,
unparseable ones included, so unknown fields, key order and spacing survive. An append first
ends a last line that has no newline (a writer that died mid-line), so the new message never
joins a broken one. Callers hold the thread's lock (`ThreadStore.locked`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import InsufficientStorage, InvalidRequest

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
            raise InvalidRequest(
                f"{path.parent.name}/{path.name} is {st.st_size} bytes, more than Hearth reads "
                f"({MAX_FILE_BYTES}); split the conversation by hand."
            )
        return fh.read()


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
    """Add whole lines at the end, in one write, synced."""
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
        size = st.st_size
        if size:
            last = os.pread(fd, 1, size - 1)
            if last != b"\n":
                payload = b"\n" + payload  # end the torn last line; it stays as it was
        _write_all(fd, payload, path)
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite(path: Path, lines: Iterable[Line]) -> None:
    """Replace the file with `lines` (unchanged ones byte for byte): a temp file in the same
    folder, fsync, rename, fsync the folder. A crash leaves the old file or the new one."""
    payload = b"".join(line.raw + b"\n" for line in lines)
    write_atomic(path, payload)


def write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, payload, path)
            os.fsync(fd)
        finally:
            os.close(fd)
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


def _write_all(fd: int, payload: bytes, path: Path) -> None:
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
