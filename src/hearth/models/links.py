"""Files outside the home that the user chose to use in place (`hearth models import --mode link`).

A model.json may come from a shared folder or a pull, so a `file://` source or an absolute
`llama_model_path` in it is not, on its own, a reason to open a file anywhere on disk. The
user's own acts are: linking a file with the CLI (recorded here, in the home, where no model
folder can write), and the folders listed in the `import_dirs` setting.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from hearth.core import atomic

LINKS_FILE = "linked-files.json"


def is_inside(path: str, root: str) -> bool:
    """True if the real path `path` is `root` or lies under it (both already real paths)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class FileRoots:
    """Where a model's files may live besides its own folder: import_dirs and linked files."""

    def __init__(self, home: Path, import_dirs: Iterable[Path] = ()) -> None:
        self.path = home / LINKS_FILE
        self.dirs = [os.path.realpath(d) for d in import_dirs]
        self._cache: tuple[tuple[int, int] | None, frozenset[str]] = (None, frozenset())
        self._lock = threading.Lock()

    def linked(self) -> frozenset[str]:
        """The linked files (real paths), re-read only when the file changes."""
        try:
            st = os.stat(self.path)
        except OSError:
            return frozenset()
        key = (st.st_mtime_ns, st.st_size)
        if self._cache[0] != key:
            self._cache = (key, frozenset(self._read()))
        return self._cache[1]

    def _read(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        files = data.get("files") if isinstance(data, dict) else None
        return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []

    def allows(self, real_path: str, folder: str) -> bool:
        """May a model in `folder` (a real path) use the file at `real_path`?"""
        if is_inside(real_path, folder):
            return True
        if any(is_inside(real_path, d) for d in self.dirs):
            return True
        return real_path in self.linked()

    def add(self, paths: Iterable[Path]) -> None:
        """Record files the user linked (atomic rewrite under a lock, across processes)."""
        with self._lock, open(self.path.with_name(f".{LINKS_FILE}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            files = self._read()
            for path in paths:
                real = os.path.realpath(path)
                if real not in files:
                    files.append(real)
            atomic.write_json(
                self.path, {"files": files}, indent=2, newline=True, storage_error=True
            )
