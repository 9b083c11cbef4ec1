"""Read a small file another program wrote, without letting its owner stall Hearth.

A plain `open()` of a FIFO blocks until a writer appears (forever, on the event loop), and a
device such as /dev/zero streams without end. So: open non-blocking, fstat the open handle (not
the name: no swap between check and use), refuse anything that is not a regular file, and read
at most `limit + 1` bytes so the caller can tell "too large" apart from "exactly the limit".
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path names a FIFO, device, socket or folder: never read."""


def read_regular(path: Path, limit: int) -> bytes:
    """Up to `limit + 1` bytes of `path`; FileNotFoundError if absent, NotRegularFile (an
    OSError with strerror set) if it is not a regular file, OSError for any other failure."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotRegularFile(
                errno.EINVAL, "not a regular file (a FIFO, device or folder)", str(path)
            )
        return handle.read(limit + 1)
