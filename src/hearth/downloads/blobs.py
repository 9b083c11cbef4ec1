"""Reuse a file the home already has instead of downloading it again (same sha256, same size).

Ollama's tags share blobs (`llama3.2` and `llama3.2:3b` are one GGUF), and a sha256 recorded in a
model's `sources` is the hash Hearth computed while downloading it. A new model that needs a file
with that hash gets a hard link to it: no bytes fetched, no disk space spent, and deleting either
model leaves the other's file intact. Across file systems (a models folder that is a symlink to
another disk) a hard link is impossible, so the file is copied instead, under a hidden temporary
name first so the model never lists a half-copied file as present.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

from hearth.downloads.urls import FileSpec
from hearth.models.store import ModelStore

log = logging.getLogger(__name__)

#: link() errors that mean "this file system cannot link these two": copy instead.
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def find_blob(store: ModelStore, sha256: str, size: int, *, exclude: Path) -> Path | None:
    """A present file of another model whose source records this sha256 and that has this size.

    The size is checked on disk (a cheap guard against a file replaced by hand); the hash is not
    recomputed, which would cost a full read of a multi-GB file to save nothing in the usual case.
    """
    wanted = sha256.lower()
    for entry in store.list():
        if entry.info is None or entry.folder.resolve() == exclude.resolve():
            continue
        for source in entry.info.sources:
            if (source.sha256 or "").lower() != wanted or source.size != size:
                continue
            path = entry.folder / source.filename
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and path.stat().st_size == size:
                    return path
    return None


def link_or_copy(existing: Path, target: Path) -> str:
    """Make `target` the same bytes as `existing`: "linked", or "copied" across file systems."""
    try:
        os.link(existing, target)
        return "linked"
    except FileExistsError:
        return "linked"  # someone (another pull of the same blob) was first
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
    temp = target.with_name(f".{target.name}.copy")
    try:
        shutil.copyfile(existing, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return "copied"


def reuse_known_blobs(store: ModelStore, folder: Path, specs: list[FileSpec]) -> list[str]:
    """Link (or copy) every missing file of `specs` that the home already holds by sha256.

    Returns the names now present this way; the others are left for the download.
    """
    reused: list[str] = []
    for spec in specs:
        target = folder / spec.filename
        if not spec.sha256 or spec.size is None or target.exists():
            continue
        existing = find_blob(store, spec.sha256, spec.size, exclude=folder)
        if existing is None:
            continue
        how = link_or_copy(existing, target)
        log.info("%s %s from %s instead of downloading it", how, spec.filename, existing)
        reused.append(spec.filename)
    return reused
