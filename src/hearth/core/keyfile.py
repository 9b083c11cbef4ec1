"""The API key from a file (`--api-key-file`, HEARTH_API_KEY_FILE, settings.json
`api_key_file`), and which of the key's sources wins.

A key on the command line (`--api-key KEY`) is readable by every local user in `ps` and
/proc/PID/cmdline, while the key is what keeps other local users out. The environment variable
(readable only by the user and root) and a key file are the ways that keep it secret. A key
file is refused the way ssh refuses a private key: when it is not a regular file (a FIFO, a
device, a folder), when group or others may access it at all (`chmod 600` fixes that), or when
another user owns it (they could read or replace it). One trailing newline (as `echo` and
editors write) is dropped; anything else that a client could not send back is refused.

Standard library only: `hearth ps` reads the key through here without loading pydantic.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hearth.core.errors import InvalidRequest

MAX_KEY_FILE_BYTES = 4096
KEY_FIELDS = ("api_key", "api_key_file")


def read_key_file(path: str | Path) -> str:
    """The key held in `path`, or InvalidRequest naming the file, the problem and the fix."""
    where = Path(path).expanduser()
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(where, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise _bad(f"The API key file {where} cannot be opened ({exc.strerror}).") from None
    try:
        _check_file(where, os.fstat(fd))
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise _bad(
            f"The API key file {where} is over {MAX_KEY_FILE_BYTES} bytes; hold the key alone."
        )
    return _key_of(data, where)


def _check_file(where: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise _bad(
            f"The API key file {where} is not a regular file. Put the key in a plain file "
            "(chmod 600) and name that file."
        )
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise _bad(
            f"The API key file {where} is readable or writable by other users (mode "
            f"{mode:04o}), who could then use or change the key. Run `chmod 600 {where}` "
            "and start again."
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise _bad(
            f"The API key file {where} belongs to another user (uid {info.st_uid}), who could "
            "read or replace it. Use a file of your own (chmod 600)."
        )


def _key_of(data: bytes, where: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"The API key file {where} is not UTF-8 text.") from None
    key = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not key:
        raise _bad(
            f"The API key file {where} is empty. Write a key into it, e.g. `python -c "
            f"'import secrets; print(secrets.token_urlsafe(24))' > {where}`."
        )
    if "\n" in key or "\r" in key or key != key.strip() or not key.isprintable():
        raise _bad(
            f"The API key file {where} must hold the key alone on one line, without spaces "
            "around it or control characters."
        )
    return key


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="api_key_file")


def merge_key_layers(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """`api_key` and `api_key_file` from (name, layer) pairs, lowest precedence first: the
    highest layer that names either one decides (both in one layer is an error). A key file
    is read here, its key returned as `api_key` beside the file's path in `api_key_file`."""
    chosen: dict[str, Any] = {}
    for name, layer in layers:
        given = {k: layer[k] for k in KEY_FIELDS if layer.get(k) is not None}
        if len(given) == 2:
            raise InvalidRequest(
                f"Both api_key and api_key_file are set in {name}; keep one of them.",
                param="api_key_file",
            )
        if given:
            chosen = given
    path = chosen.get("api_key_file")
    if path is None:
        return chosen
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise _bad("Setting 'api_key_file' must be the path of a file holding the API key.")
    return {"api_key": read_key_file(str(path)), "api_key_file": str(path)}
