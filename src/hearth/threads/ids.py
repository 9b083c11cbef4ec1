"""Thread and message ids: the grammar that keeps a request inside `<home>/threads`, and new ids.

A thread id is a folder name, so it follows the model id grammar (`hearth.models.ids`): letters,
digits, `.`, `_`, `-`, 1 to 128 characters, not starting with `.` (so never `.`, `..`, a slash,
a NUL or an absolute path). Message ids never name a file, but they travel in URLs, so they get
the same grammar; a stored id outside it (Jan's drafts used numbers) is still shown, as a string.

New threads get Jan 0.6's ids (a UUID4); new messages get ULIDs as Jan writes them: 26
characters, sortable by creation time, so ids alone order a thread's messages.
"""

from __future__ import annotations

import os
import time
import uuid

from hearth.core.errors import InvalidRequest
from hearth.models.ids import MAX_ID_LENGTH, is_valid_id

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def refuse_id(kind: str, value: str, param: str) -> InvalidRequest:
    shown = value if len(value) <= 60 else value[:57] + "..."
    return InvalidRequest(
        f"{shown!r} is not a valid {kind} id. Ids use only letters, digits, '.', '_' and '-', "
        f"are 1 to {MAX_ID_LENGTH} characters long and do not start with '.'.",
        param=param,
        code=f"invalid_{kind}_id",
    )


def validate_thread_id(thread_id: str) -> str:
    """The id unchanged, or InvalidRequest (400) before it touches the disk."""
    if is_valid_id(thread_id):
        return thread_id
    raise refuse_id("thread", thread_id, "thread_id")


def validate_message_id(message_id: str) -> str:
    if is_valid_id(message_id):
        return message_id
    raise refuse_id("message", message_id, "message_id")


def new_thread_id() -> str:
    """A fresh thread id, as Jan >= 0.6 names its folders."""
    return str(uuid.uuid4())


def new_message_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, in Crockford's base32."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
